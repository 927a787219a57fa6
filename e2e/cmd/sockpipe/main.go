// Command sockpipe connects its standard input and output to a unix socket:
// what arrives on stdin goes to the socket, what the socket answers goes to
// stdout. Run inside a kind node through `docker exec -i`, it carries one
// connection of the e2e tests to the node's containerd socket, which the
// tests on the Docker host cannot open directly (see e2e/provider,
// CRIForwarder). Kind's node image has no socat; this is the few lines of it
// that the tests need, built static so it runs in any node image.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sockpipe SOCKET (stdin → SOCKET → stdout)")
		os.Exit(2)
	}
	conn, err := net.Dial("unix", os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "sockpipe: %v\n", err)
		os.Exit(1)
	}
	uc := conn.(*net.UnixConn)
	go func() {
		// stdin closed: the client is done sending; the server sees EOF,
		// finishes, and closes its side, which ends the copy below.
		io.Copy(uc, os.Stdin)
		uc.CloseWrite()
	}()
	if _, err := io.Copy(os.Stdout, uc); err != nil {
		fmt.Fprintf(os.Stderr, "sockpipe: %v\n", err)
		os.Exit(1)
	}
}
