package e2e

import (
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestTLSShutdownSendsGOAWAY speaks raw HTTP/2 frames to obsproxy over
// TLS: with a slow request in flight, SIGTERM makes obsproxy send GOAWAY
// (RFC 9113 section 6.8) on the connection, then the response to the
// in-flight stream in full, then close (spec section 7).
func TestTLSShutdownSendsGOAWAY(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM := ca.issue(t, leafOpts{serial: 8})
	cf, kf := writePair(t, t.TempDir(), certPEM, keyPEM)
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startTLSObsproxy(t, 0, []*worker{w}, ca.pool, "localhost",
		"OBSPROXY_TLS_CERT_FILE="+cf, "OBSPROXY_TLS_KEY_FILE="+kf, "OBSPROXY_SHUTDOWN_TIMEOUT=30s")
	hostport := strings.TrimPrefix(in.url, "https://")

	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", hostport,
		&tls.Config{RootCAs: ca.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "h2", c.ConnectionState().NegotiatedProtocol)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = c.Write([]byte(http2.ClientPreface))
	require.NoError(t, err)
	fr := http2.NewFramer(c, c)
	require.NoError(t, fr.WriteSettings())
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", hostport}, {":path", "/slow?seconds=2"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr.Bytes(), EndStream: true, EndHeaders: true}))
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_in_flight_requests", nil) == 1 }, "request not in flight")

	in.proc.signal(syscall.SIGTERM)
	var goaway *http2.GoAwayFrame
	var events []string
	ended := false
	for !ended {
		f, err := fr.ReadFrame()
		if err != nil {
			events = append(events, "closed")
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			events = append(events, "goaway")
			if goaway == nil {
				goaway = f
			}
		case *http2.HeadersFrame:
			events = append(events, "headers")
			ended = ended || f.StreamEnded()
		case *http2.DataFrame:
			if f.StreamEnded() {
				events = append(events, "end of stream 1")
				ended = true
			}
		}
	}
	require.NotNil(t, goaway, "no GOAWAY before the connection closed: %v", events)
	assert.Equal(t, http2.ErrCodeNo, goaway.ErrCode)
	assert.Contains(t, events, "end of stream 1", "the in-flight stream was cut: %v", events)
	assert.Less(t, indexOf(events, "goaway"), indexOf(events, "end of stream 1"), "GOAWAY comes while the stream is in flight: %v", events)
	assert.Equal(t, 0, in.proc.wait(t, 15*time.Second))
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
