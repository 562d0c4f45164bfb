// Package slowclient is the client of tests that read slowly: a TCP
// connection whose receive buffer is a few KiB, so that a proxy writing to
// it while it reads nothing blocks once its own buffers are full, as it
// would for a slow reader across the Internet.
package slowclient

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Dial connects to addr (host:port) with a 4 KiB receive buffer.
func Dial(addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	return d.Dial("tcp", addr)
}

// Post sends a POST of a JSON body to path on addr over a Dial connection,
// reads nothing of the answer for wait, then all of it. It returns the
// status, how many body bytes it read and how long the whole request took;
// timeout bounds it all.
func Post(addr, path, body string, wait, timeout time.Duration) (status int, n int64, took time.Duration, err error) {
	conn, err := Dial(addr)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	start := time.Now()
	_ = conn.SetDeadline(start.Add(timeout))
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		path, addr, len(body), body); err != nil {
		return 0, 0, 0, err
	}
	time.Sleep(wait)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, 0, 0, err
	}
	n, err = io.Copy(io.Discard, res.Body)
	return res.StatusCode, n, time.Since(start), err
}
