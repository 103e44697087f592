// Command upstream is the benchmark's fast upstream: a minimal Go HTTP
// server that answers GET /small with a 100-byte body, GET /large with a
// 16 KiB body and GET /health with a healthy JSON document (for obsproxy's
// probes). It serves HTTP/1.1 on -addr and, when -h2c-addr is set, HTTP/2
// cleartext with prior knowledge (RFC 9113 section 3.3) on a second port.
// It listens on loopback only and runs until SIGTERM or SIGINT.
package main

import (
	"bytes"
	"context"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "HTTP/1.1 listen address")
	h2cAddr := flag.String("h2c-addr", "", "h2c (prior knowledge) listen address; empty disables it")
	flag.Parse()

	mux := http.NewServeMux()
	mux.Handle("GET /small", fixed("text/plain; charset=utf-8", bytes.Repeat([]byte("x"), 99), true))
	mux.Handle("GET /large", fixed("application/octet-stream", bytes.Repeat([]byte("y"), 16<<10), false))
	mux.Handle("GET /health", fixed("application/json", []byte(`{"status":"healthy"}`), false))

	servers := []*http.Server{{Addr: *addr, Handler: mux, IdleTimeout: 120 * time.Second}}
	if *h2cAddr != "" {
		s := &http.Server{Addr: *h2cAddr, Handler: mux, IdleTimeout: 120 * time.Second, Protocols: new(http.Protocols)}
		s.Protocols.SetUnencryptedHTTP2(true)
		servers = append(servers, s)
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ListenAndServe() }()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		log.Fatalf("upstream: %v", err)
	case <-sigs:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(ctx)
	}
}

// fixed answers every request with body; the header map values are built
// once, so a request costs the server as little as net/http allows.
func fixed(contentType string, body []byte, newline bool) http.Handler {
	if newline {
		body = append(body, '\n')
	}
	ct, cl := []string{contentType}, []string{strconv.Itoa(len(body))}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"], h["Content-Length"] = ct, cl
		w.Write(body)
	})
}
