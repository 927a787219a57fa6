// Command sumfile is the workload of the injection e2e test: it prints the
// sha256 of each file named on its command line, then waits for SIGTERM, so
// a test can read from the pod log what the pod saw at its mount path.
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	code := 0
	for _, p := range os.Args[1:] {
		f, err := os.Open(p)
		if err != nil {
			fmt.Printf("error %s: %v\n", p, err)
			code = 1
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			fmt.Printf("error %s: %v\n", p, err)
			code = 1
			continue
		}
		fmt.Printf("sha256 %x %s\n", h.Sum(nil), p)
	}
	if code != 0 {
		os.Exit(code)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
}
