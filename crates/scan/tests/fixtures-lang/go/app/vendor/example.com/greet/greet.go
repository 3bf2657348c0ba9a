// Package greet is a vendored test dependency.
package greet

// Hello says hello.
func Hello() string { return "hello" }
