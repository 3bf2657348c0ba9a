// Package local is replaced by the ./local directory.
package local

// Name names it.
func Name() string { return "local" }
