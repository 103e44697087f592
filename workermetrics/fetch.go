package workermetrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// reason is why a fetch failed or a family was dropped: the `reason` label
// of obsproxy_worker_metrics_errors_total (spec section 9).
type reason int

const (
	reasonTimeout reason = iota
	reasonConnect
	reasonStatus
	reasonTooLarge
	reasonParse
	reasonConflict
	numReasons
	// reasonNone is a successful fetch.
	reasonNone reason = -1
)

var reasonNames = [numReasons]string{"timeout", "connect", "status", "too_large", "parse", "conflict"}

// String returns the label value.
func (r reason) String() string {
	if r < 0 || r >= numReasons {
		return "none"
	}
	return reasonNames[r]
}

// acceptHeader asks for the classic Prometheus text format (0.0.4), the
// only one parsed; prometheus_client answers it by default.
const acceptHeader = "text/plain;version=0.0.4;q=1,*/*;q=0.1"

var (
	errTooLarge      = errors.New("body over the byte limit")
	errTooManySeries = errors.New("more sample lines than the series limit")
)

// fetchResult is one worker's fetch: its families, or why it failed.
type fetchResult struct {
	families  map[string]*dto.MetricFamily
	reason    reason
	err       error
	duration  time.Duration
	conflicts int // families dropped by the merge
}

// dialError marks an error of Config.Dial, so that it is counted as
// reason connect.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dialling worker: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// newClient returns the HTTP client for one worker: it dials through dial
// whatever the URL says, never consults an environment proxy, keeps one
// idle connection for the next scrape, and asks for gzip (net/http
// decompresses it transparently, so the byte limit applies to the
// decompressed body). An h2c worker is spoken to in HTTP/2 cleartext with
// prior knowledge, as the proxy does.
func newClient(w *lifecycle.Worker, dial Dialer) *http.Client {
	t := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := dial(ctx, w)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     4 * time.Second, // below uvicorn's and hypercorn's 5 s keep-alive
	}
	if w.H2C {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is a status failure, not followed
		},
	}
}

// fetch GETs the metrics path from ws within ctx and parses the body.
func (g *Gatherer) fetch(ctx context.Context, ws *workerState) (r fetchResult) {
	start := time.Now()
	defer func() { r.duration = time.Since(start) }()
	// The host is a placeholder: the transport dials ws's own address.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost"+g.cfg.Path, nil)
	if err != nil {
		return fetchResult{reason: reasonStatus, err: fmt.Errorf("building request: %w", err)}
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("User-Agent", g.cfg.UserAgent)
	resp, err := ws.client.Do(req)
	if err != nil {
		return fetchResult{reason: classify(ctx, err), err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fetchResult{reason: reasonStatus, err: fmt.Errorf("status %s", resp.Status)}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil && mt != "text/plain" {
			return fetchResult{reason: reasonParse, err: fmt.Errorf("content type %q is not the text format", mt)}
		}
	}
	families, err := parse(resp.Body, g.cfg.MaxBytes, g.cfg.MaxSeries)
	if err != nil {
		switch {
		case errors.Is(err, errTooLarge), errors.Is(err, errTooManySeries):
			return fetchResult{reason: reasonTooLarge, err: err}
		case ctx.Err() != nil:
			return fetchResult{reason: reasonTimeout, err: err}
		case errors.Is(err, errRead):
			return fetchResult{reason: reasonConnect, err: err}
		}
		return fetchResult{reason: reasonParse, err: err}
	}
	if err := prepare(ws.w.Name, families); err != nil {
		return fetchResult{reason: reasonParse, err: err}
	}
	return fetchResult{families: families, reason: reasonNone}
}

// classify maps a client error to its reason: timeout once ctx is done,
// connect otherwise (a refused or failed dial, a connection cut before the
// response).
func classify(ctx context.Context, err error) reason {
	var ne net.Error
	if ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		return reasonTimeout
	}
	return reasonConnect
}

// errRead marks a failure to read the body (the connection broke).
var errRead = errors.New("reading body")

// parse reads the text exposition from body, at most maxBytes of it and
// maxSeries sample lines, aborting as soon as either is passed, so that
// the memory spent on one worker is bounded by the limits.
func parse(body io.Reader, maxBytes int64, maxSeries int) (map[string]*dto.MetricFamily, error) {
	lr := &limitReader{r: body, maxBytes: maxBytes, maxLines: maxSeries, atStart: true}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(lr)
	if lr.err != nil {
		return nil, lr.err
	}
	if err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	return families, nil
}

// limitReader passes body through, counting bytes and sample lines (lines
// that are neither empty nor comments); past either limit, or on a read
// error other than io.EOF, it fails for good with err.
type limitReader struct {
	r        io.Reader
	maxBytes int64
	maxLines int
	n        int64
	lines    int
	atStart  bool // the next byte starts a line
	err      error
}

// Read implements io.Reader.
func (l *limitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.maxBytes {
		l.err = fmt.Errorf("%w (%d bytes)", errTooLarge, l.maxBytes)
		return 0, l.err
	}
	b := p[:n]
	for len(b) > 0 {
		if l.atStart {
			if b[0] != '#' && b[0] != '\n' {
				l.lines++
			}
			l.atStart = false
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		l.atStart = true
		b = b[i+1:]
	}
	if l.lines > l.maxLines {
		l.err = fmt.Errorf("%w (%d)", errTooManySeries, l.maxLines)
		return 0, l.err
	}
	if err != nil && err != io.EOF {
		l.err = fmt.Errorf("%w: %w", errRead, err)
		return n, l.err
	}
	return n, err
}
