// A program that uses the standard library only.
package main

import "fmt"

func main() { fmt.Println("hello") }
