package main

import (
	"fmt"
	"io"
)

func runDoctor(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "pushrelay doctor: not built yet")
	return 2
}
