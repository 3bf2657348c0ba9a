// A program with three dependencies, built offline from vendor/: one as required, one
// replaced by another module's release, one replaced by a local directory.
package main

import (
	"fmt"

	"example.com/greet"
	"example.com/local"
	"example.com/old"
)

func main() { fmt.Println(greet.Hello(), old.Name(), local.Name()) }
