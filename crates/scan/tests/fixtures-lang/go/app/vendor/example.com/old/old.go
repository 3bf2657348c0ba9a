// Package old is replaced by example.com/fork v1.0.1 (its code vendored here).
package old

// Name names it.
func Name() string { return "fork" }
