package connstate

import (
	"crypto/tls"
	"net"
	"net/http"
)

// The values of the `protocol` label of obsproxy_client_requests_total
// (spec section 11), indexed by protocolIndex.
var protocolNames = [numProtocols]string{"HTTP/1.0", "HTTP/1.1", "HTTP/2.0"}

const numProtocols = 3

// protocolIndex maps a request's protocol version to its counter: HTTP/2
// (and anything above) to HTTP/2.0, HTTP/1.0 (and HTTP/0.9) to HTTP/1.0,
// every other HTTP/1.x to HTTP/1.1.
func protocolIndex(major, minor int) int {
	switch {
	case major >= 2:
		return 2
	case minor == 0:
		return 0
	}
	return 1
}

// CountRequests wraps the public handler so that every client request is
// counted by protocol (obsproxy_client_requests_total) before next serves
// it: one atomic add into a fixed array, no allocation per request.
//
// net/http hands a handler the HTTP/2 connection preface (`PRI *
// HTTP/2.0`) read by its HTTP/1 server, for x/net's h2c to hijack; obsproxy
// serves h2c through http.Server.Protocols instead, so such a request only
// arrives when h2c is off. It is answered 505 HTTP Version Not Supported,
// not counted and never sent to a worker.
func (t *Tracker) CountRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && r.Method == "PRI" {
			w.Header().Set("Connection", "close")
			http.Error(w, "HTTP/2 with prior knowledge is not enabled", http.StatusHTTPVersionNotSupported)
			return
		}
		t.requests[protocolIndex(r.ProtoMajor, r.ProtoMinor)].Add(1)
		next.ServeHTTP(w, r)
	})
}

// Requests returns the client requests counted by CountRequests so far, by
// protocol: HTTP/1.0, HTTP/1.1, HTTP/2.0.
func (t *Tracker) Requests() (http10, http11, http2 uint64) {
	return t.requests[0].Load(), t.requests[1].Load(), t.requests[2].Load()
}

// HandshakeErrors returns the failed TLS handshakes counted so far
// (obsproxy_tls_handshake_errors_total).
func (t *Tracker) HandshakeErrors() uint64 { return t.handshakeErrors.Load() }

// unwrapTLS returns the connection under a server-side *tls.Conn, and
// whether c was one. A TLS listener over a Listen listener hands the
// http.Server *tls.Conn values whose NetConn is the counted *Conn.
func unwrapTLS(c net.Conn) (net.Conn, *tls.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn(), tc
	}
	return c, nil
}

// closedTLS counts a TLS connection that closes without a finished
// handshake as a failed handshake: a client that does not trust the
// certificate, a scanner, a plain HTTP request to the TLS port (net/http
// answers it with a 400 and closes), a connection dropped before its hello.
func (t *Tracker) closedTLS(tc *tls.Conn) {
	if !tc.ConnectionState().HandshakeComplete {
		t.handshakeErrors.Add(1)
	}
}
