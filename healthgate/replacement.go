package healthgate

import (
	"context"
	"io"
	"net"
	"net/http"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// Serves probes ep, a process of w that does not take w's requests yet (a
// supervisor's replacement, spec section 8: a new process gets traffic
// only after a probe answers healthy or degraded), exactly as w's own
// probes would: same path, timeout and verdict, a new connection. It
// reports whether the verdict is serving. The result is neither counted in
// obsproxy_probes_total nor reported to the pool: those are the worker's
// current process's. Safe for concurrent use.
func (p *Prober) Serves(ctx context.Context, w *lifecycle.Worker, ep *lifecycle.Endpoint) bool {
	d := &net.Dialer{Timeout: p.cfg.Timeout}
	t := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, ep.Network, ep.Address)
		},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	if w.H2C {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	defer t.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost"+p.cfg.Path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", p.cfg.UserAgent)
	req.Header.Set("Accept", "application/json")
	client := &http.Client{Transport: t, CheckRedirect: noRedirects}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return false
	}
	return Classify(resp.StatusCode, resp.Header.Get("Content-Type"), body).Health.Serving()
}
