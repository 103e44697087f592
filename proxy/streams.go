package proxy

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/obsproxy/obsproxy/internal/closeset"
)

// echoRequestID is every worker proxy's ModifyResponse: the response carries
// the request id obsproxy sent to the worker (spec section 4), replacing any
// the worker set itself. The slice is shared with the outbound request
// header, so this allocates nothing.
func echoRequestID(res *http.Response) error {
	if id := res.Request.Header[hdrRequestID]; len(id) > 0 {
		res.Header[hdrRequestID] = id
	}
	return nil
}

// streamTransport wraps a worker's transport so that the bodies of
// text/event-stream responses can be closed on shutdown. Other responses
// pass through untouched, at the cost of one header lookup.
type streamTransport struct {
	rt      http.RoundTripper
	streams *streamSet
}

// RoundTrip implements http.RoundTripper.
func (t *streamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if ct := res.Header[hdrContentType]; len(ct) > 0 && isEventStream(ct[0]) {
		res.Body = t.streams.track(res.Body)
	}
	return res, nil
}

// streamSet is the set of open event-stream bodies. It is safe for
// concurrent use.
type streamSet struct {
	open   closeset.Set[*streamBody]
	closed atomic.Bool
}

// track registers body; once closeAll has run, body is closed at once.
func (s *streamSet) track(body io.ReadCloser) io.ReadCloser {
	b := &streamBody{ReadCloser: body, set: s}
	s.open.Add(b)
	if s.closed.Load() {
		b.Close()
	}
	return b
}

func (s *streamSet) closeAll() int {
	s.closed.Store(true)
	return s.open.CloseAll()
}

// streamBody is a tracked event-stream body; Close is safe to call more than
// once and from another goroutine than the one reading.
type streamBody struct {
	io.ReadCloser
	set  *streamSet
	once sync.Once
	err  error
}

func (b *streamBody) Close() error {
	b.once.Do(func() {
		b.set.open.Remove(b)
		b.err = b.ReadCloser.Close()
	})
	return b.err
}
