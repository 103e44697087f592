package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// wsConn is the least WebSocket client (RFC 6455) that these tests need:
// the opening handshake, masked text frames out, unfragmented frames in.
type wsConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialWebSocket(hostport, path string) (*wsConn, *http.Response, error) {
	c, err := net.DialTimeout("tcp", hostport, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	return upgradeWebSocket(c, hostport, path)
}

// upgradeWebSocket sends the opening handshake on c (plain TCP or TLS).
func upgradeWebSocket(c net.Conn, hostport, path string) (*wsConn, *http.Response, error) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, hostport, base64.StdEncoding.EncodeToString(key))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, resp, fmt.Errorf("handshake: %s", resp.Status)
	}
	return &wsConn{c: c, br: br}, resp, nil
}

func (w *wsConn) writeFrame(opcode byte, payload []byte) error {
	hdr := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n < 1<<16:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	mask := make([]byte, 4)
	rand.Read(mask)
	hdr = append(hdr, mask...)
	masked := make([]byte, len(payload))
	for i := range payload {
		masked[i] = payload[i] ^ mask[i%4]
	}
	_, err := w.c.Write(append(hdr, masked...))
	return err
}

// sendText sends one text message.
func (w *wsConn) sendText(s string) error { return w.writeFrame(0x1, []byte(s)) }

// readMessage reads one unfragmented frame and returns its opcode and payload.
func (w *wsConn) readMessage() (byte, string, error) {
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return 0, "", err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return 0, "", err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return 0, "", err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.br, p); err != nil {
		return 0, "", err
	}
	return h[0] & 0x0f, string(p), nil
}

// close sends a close frame, waits briefly for the echo, and closes.
func (w *wsConn) close() {
	w.writeFrame(0x8, []byte{0x03, 0xe8})
	w.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		op, _, err := w.readMessage()
		if err != nil || op == 0x8 {
			break
		}
	}
	w.c.Close()
}
