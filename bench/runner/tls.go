package main

// The TLS phase (PHASES=tls): obsproxy, nginx, HAProxy and Caddy terminate
// TLS with the same certificate (ECDSA P-256, made here) in front of the
// same upstream, and are measured for HTTP/1.1 throughput over TLS (wrk),
// HTTP/2 throughput (h2load) and new TLS connections per second (wrk with
// Connection: close: one full handshake per request).

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// tlsFiles are the certificate and key every TLS target serves.
type tlsFiles struct{ cert, key, combined string }

// makeTLSFiles writes a self-signed ECDSA P-256 certificate for localhost
// and 127.0.0.1, its key, and both in one file (HAProxy's form).
func makeTLSFiles(dir string) (tlsFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tlsFiles{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsFiles{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tlsFiles{}, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tlsFiles{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	f := tlsFiles{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), combined: filepath.Join(dir, "combined.pem")}
	for path, b := range map[string][]byte{f.cert: certPEM, f.key: keyPEM, f.combined: append(append([]byte{}, certPEM...), keyPEM...)} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return tlsFiles{}, err
		}
	}
	return f, nil
}

// tlsProbe is the readiness client of TLS targets: HTTP/2 when offered,
// the certificate not verified (it is the benchmark's own).
var tlsProbe = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true, // the benchmark's own certificate
}}

// waitTLS waits until url answers 200 over HTTP/2 (every TLS target must
// negotiate it).
func waitTLS(p *proc, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := tlsProbe.Get(url)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && res.ProtoMajor == 2 {
				return nil
			}
			err = fmt.Errorf("status %d over %s", res.StatusCode, res.Proto)
		}
		if !p.alive() {
			return fmt.Errorf("%s exited:\n%s", p.name, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s: %v\n%s", p.name, url, err, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsPhase runs the TLS rounds and prints their tables.
func (b *bench) tlsPhase() error {
	files, err := makeTLSFiles(filepath.Join(b.s.tmp, "tls"))
	if err != nil {
		return err
	}
	up, err := freePort()
	if err != nil {
		return err
	}
	upstream := fmt.Sprintf("127.0.0.1:%d", up)
	upProc, err := start(b.s.tmp, "tls-upstream", b.s.serverCPU, nil, b.s.upstream, "-addr", upstream)
	if err != nil {
		return err
	}
	defer upProc.stop()
	if err := waitOK(upProc, "http://"+upstream+"/small"); err != nil {
		return err
	}
	starters := []struct {
		name string
		fn   func(port int) (*proc, error)
	}{
		{"obsproxy", func(port int) (*proc, error) {
			return b.startObsproxy("tls-obsproxy", port, "w1=http://"+upstream, "least_inflight",
				"OBSPROXY_TLS_CERT_FILE="+files.cert, "OBSPROXY_TLS_KEY_FILE="+files.key)
		}},
		{"nginx", func(port int) (*proc, error) {
			return b.startNginxWith("tls-nginx", port, []string{upstream}, nginxOptions{tls: &files})
		}},
		{"haproxy", func(port int) (*proc, error) { return b.startHAProxyTLS("tls-haproxy", port, upstream, files) }},
		{"caddy", func(port int) (*proc, error) { return b.startCaddyTLS("tls-caddy", port, upstream, files) }},
	}
	var targets []*target
	defer func() {
		for _, t := range targets {
			t.p.stop()
		}
	}()
	for _, st := range starters {
		port, err := freePort()
		if err != nil {
			return err
		}
		p, err := st.fn(port)
		t := &target{name: st.name, base: fmt.Sprintf("https://127.0.0.1:%d", port), p: p}
		if err == nil {
			err = waitTLS(p, t.base+"/small")
		}
		if err != nil {
			b.logf("TLS: leaving out %s: %v", st.name, err)
			b.printf("note: TLS %s left out: %v\n", st.name, firstLine(err.Error()))
			if p != nil {
				p.stop()
			}
			continue
		}
		targets = append(targets, t)
	}
	b.logf("TLS targets: %s", strings.Join(targetNames(targets), ", "))

	type tlsWorkload struct {
		name string
		run  func(t *target) (result, error)
	}
	h2conns, h2streams := max(1, b.s.conns/8), 8
	workloads := []tlsWorkload{
		{fmt.Sprintf("HTTP/1.1 over TLS, keep-alive, c=%d (wrk)", b.s.conns), func(t *target) (result, error) {
			return b.wrk(t.base+"/small", b.s.conns, b.s.duration)
		}},
		{fmt.Sprintf("HTTP/2, %d connections × %d streams (h2load)", h2conns, h2streams), func(t *target) (result, error) {
			return b.h2load(t.base+"/small", h2conns, h2streams, b.s.duration)
		}},
		{fmt.Sprintf("new TLS connections, one request each, c=%d (wrk, Connection: close)", b.s.conns), func(t *target) (result, error) {
			return b.wrk(t.base+"/small", b.s.conns, b.s.duration, "-H", "Connection: close")
		}},
	}
	results := make([]map[string][]result, len(workloads))
	for i := range results {
		results[i] = map[string][]result{}
	}
	for _, t := range targets { // warm-up
		if _, err := b.wrk(t.base+"/small", b.s.conns, b.s.warmup); err != nil {
			return err
		}
	}
	for round := 1; round <= b.s.rounds; round++ {
		la := loadavg()
		b.loads = append(b.loads, la)
		b.logf("TLS round %d/%d (load average %s)", round, b.s.rounds, la)
		for wi, w := range workloads {
			for _, t := range targets {
				r, err := w.run(t)
				if err != nil {
					return err
				}
				flag := ""
				if r.errors > 0 || r.non2xx > 0 {
					flag = fmt.Sprintf("  (!) %d errors, %d non-2xx", r.errors, r.non2xx)
				}
				b.logf("  %-62s %-9s %9.0f req/s%s", w.name, t.name, r.rps, flag)
				results[wi][t.name] = append(results[wi][t.name], r)
			}
		}
	}
	for wi, w := range workloads {
		res := results[wi]
		b.printf("\n### TLS: %s (%d rounds × %s, interleaved)\n\n", w.name, b.s.rounds, b.s.duration)
		tw := tabwriter.NewWriter(&b.out, 0, 0, 2, ' ', tabwriter.Debug)
		fmt.Fprintln(tw, "| target\t req/s, median [min–max]\t obsproxy ÷ target, same round, median [min–max]\t errors\t")
		fmt.Fprintln(tw, "|---\t---\t---\t---\t")
		for _, t := range targets {
			var rps []float64
			var errs int64
			for _, r := range res[t.name] {
				rps = append(rps, r.rps)
				errs += r.errors + r.non2xx
			}
			ratio := "–"
			if t.name != "obsproxy" {
				ratio = spread(ratios(res["obsproxy"], res[t.name]), "%.3f")
			}
			fmt.Fprintf(tw, "| %s\t %s\t %s\t %d\t\n", t.name, spread(rps, "%.0f"), ratio, errs)
		}
		tw.Flush()
		fixTable(&b.out)
	}
	if t := targetByName(targets, "obsproxy"); t != nil {
		b.printf("\nobsproxy counted over TLS: %s\n", b.tlsCounters(t.p))
	}
	return nil
}

func targetByName(ts []*target, name string) *target {
	for _, t := range ts {
		if t.name == name {
			return t
		}
	}
	return nil
}

// tlsCounters reads obsproxy's client requests by protocol and handshake
// errors from its admin /metrics: proof that the rounds went through TLS
// with observability on.
func (b *bench) tlsCounters(p *proc) string {
	var admin string
	for _, e := range p.cmd.Env {
		if v, ok := strings.CutPrefix(e, "OBSPROXY_ADMIN_ADDR="); ok {
			admin = v
		}
	}
	res, err := probeClient.Get("http://" + admin + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "obsproxy_client_requests_total{") || strings.HasPrefix(line, "obsproxy_tls_handshake_errors_total ") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}

// h2loadFinished and h2loadRequests parse h2load's summary.
var (
	h2loadFinished = regexp.MustCompile(`finished in ([0-9.]+)(m?s), ([0-9.]+) req/s`)
	h2loadRequests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2loadStatus   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// h2load runs h2load for d with conns connections of streams concurrent
// streams each, pinned to the load CPU like wrk.
func (b *bench) h2load(url string, conns, streams int, d time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+45*time.Second)
	defer cancel()
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := b.loadCommand(ctx, "h2load", "-t1", "-c"+strconv.Itoa(conns), "-m"+strconv.Itoa(streams),
		"-D", strconv.Itoa(secs), "--warm-up-time=1", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("h2load %s: %v\n%s", url, err, out)
	}
	m := h2loadFinished.FindSubmatch(out)
	r := h2loadRequests.FindSubmatch(out)
	if m == nil || r == nil {
		return result{}, fmt.Errorf("h2load %s: no summary:\n%s", url, out)
	}
	var res result
	res.rps, _ = strconv.ParseFloat(string(m[3]), 64)
	res.requests, _ = strconv.ParseInt(string(r[1]), 10, 64)
	failed, _ := strconv.ParseInt(string(r[5]), 10, 64)
	errored, _ := strconv.ParseInt(string(r[6]), 10, 64)
	timeout, _ := strconv.ParseInt(string(r[7]), 10, 64)
	res.errors = errored + timeout
	if s := h2loadStatus.FindSubmatch(out); s != nil {
		for _, i := range []int{2, 3, 4} {
			n, _ := strconv.ParseInt(string(s[i]), 10, 64)
			res.non2xx += n
		}
	} else {
		res.non2xx = failed
	}
	return res, nil
}

func (b *bench) startHAProxyTLS(name string, port int, upstream string, f tlsFiles) (*proc, error) {
	dir := filepath.Join(b.s.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	maxconn := min(10000, (int(min(b.s.nofile, 65536))-200)/2)
	conf := fmt.Sprintf(`# written by bench/runner (TLS phase)
global
  nbthread 1
  maxconn %[1]d
  pidfile %[2]s/haproxy.pid
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  maxconn %[1]d
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:%[3]d ssl crt %[4]s alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https
  default_backend workers
backend workers
  server w1 %[5]s
`, maxconn, dir, port, f.combined, upstream)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return start(b.s.tmp, name, b.s.serverCPU, nil, "haproxy", "-db", "-f", path)
}

func (b *bench) startCaddyTLS(name string, port int, upstream string, f tlsFiles) (*proc, error) {
	dir := filepath.Join(b.s.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`{
  "admin": {"disabled": true, "config": {"persist": false}},
  "logging": {"logs": {"default": {"level": "ERROR"}}},
  "apps": {
    "tls": {"certificates": {"load_files": [{"certificate": %q, "key": %q}]}},
    "http": {"servers": {"bench": {
      "listen": ["127.0.0.1:%d"],
      "protocols": ["h1", "h2"],
      "automatic_https": {"disable": true},
      "tls_connection_policies": [{"default_sni": "localhost"}],
      "routes": [{"handle": [{
        "handler": "reverse_proxy",
        "transport": {"protocol": "http", "keep_alive": {"enabled": true, "max_idle_conns": 1024, "max_idle_conns_per_host": 1024, "idle_timeout": "120s"}},
        "upstreams": [{"dial": %q}]
      }]}]
    }}}
  }
}
`, f.cert, f.key, port, upstream)
	path := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	return start(b.s.tmp, name, b.s.serverCPU, env, "caddy", "run", "--config", path)
}
