package gate

import (
	"net"
	"syscall"
)

// maxHello is the most a ClientHello in one TLS record takes: a record
// header and the largest plaintext record.
const maxHello = 5 + 16384

// hasHello reports whether a whole ClientHello record has arrived on c,
// looking without taking it (buf is scratch space). A client that means
// to finish its handshake sends its ClientHello at once, so it is there
// by the time the connection is accepted; one that holds connections
// open for nothing has sent nothing, or part of one. Knowing it on
// accept, before the handshake's goroutine runs, keeps a new client's
// connection from being taken for an idle one under a flood.
func hasHello(c net.Conn, buf []byte) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n, rerr := 0, error(nil)
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait
	})
	if err != nil || rerr != nil || n < 6 {
		return false
	}
	// A handshake record holding a ClientHello, whole.
	size := int(buf[3])<<8 | int(buf[4])
	return buf[0] == 0x16 && buf[5] == 0x01 && n >= 5+size
}
