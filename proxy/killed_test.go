package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// A request that fails on a process killed while it held the request is
// never retried (spec section 8: a request that blocks workers must not
// kill them one after another); one that fails on a worker's replacement
// process is retried as usual when it is the replaced process that was
// killed (issue 14's note: the kill mark is per process generation).
func TestOnlyTheKilledProcessesRequestsAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name      string
		killedGen uint64 // w1's generation marked killed while its process holds the request
		wantCode  int
	}{
		{"the replaced process was killed: retried on w2", 1, http.StatusOK},
		{"the process holding it was killed: 502, not retried", 2, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held := make(chan struct{}, 1)
			reset := make(chan struct{})
			// w1's current process (generation 2): holds /hang until told,
			// then resets the connection.
			w1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/hang" {
					io.WriteString(w, "w1")
					return
				}
				held <- struct{}{}
				<-reset
				c, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}
			}))
			t.Cleanup(w1.Close)
			var w2Hang atomic.Int32
			w2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/hang" {
					w2Hang.Add(1)
				}
				io.WriteString(w, "w2")
			}))
			t.Cleanup(w2.Close)

			pool, err := lifecycle.NewPool(lifecycle.Config{Supervised: true, InitialState: lifecycle.StateUp,
				Workers: []lifecycle.WorkerConfig{{Name: "w1", Network: "tcp"}, {Name: "w2", Network: "tcp"}}})
			require.NoError(t, err)
			ws := pool.Workers()
			now := time.Now()
			ws[0].SetEndpoint("tcp", deadAddress(t), 100, now)              // generation 1: the replaced process
			ws[0].SetEndpoint("tcp", w1.Listener.Addr().String(), 101, now) // generation 2: its replacement
			ws[1].SetEndpoint("tcp", w2.Listener.Addr().String(), 200, now)
			f := fixtureFor(t, Config{Pool: pool})
			srv := f.srv

			// Ties go round-robin: after an answer from w2, the next
			// request goes to w1.
			for range 2 {
				_, body := get(t, srv.URL+"/who", nil)
				if string(body) == "w2" {
					break
				}
			}
			type answer struct {
				code int
				body string
			}
			done := make(chan answer, 1)
			go func() {
				resp, err := http.Get(srv.URL + "/hang")
				if err != nil {
					done <- answer{code: -1, body: err.Error()}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done <- answer{resp.StatusCode, string(b)}
			}()
			select {
			case <-held:
			case <-time.After(5 * time.Second):
				t.Fatal("/hang never reached w1")
			}
			ws[0].MarkKilled(tc.killedGen, time.Now())
			close(reset)
			var a answer
			select {
			case a = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("no answer")
			}
			assert.Equal(t, tc.wantCode, a.code, a.body)
			retries := f.value(t, "obsproxy_retries_total", map[string]string{"worker": "w1"})
			if tc.wantCode == http.StatusOK {
				assert.Equal(t, "w2", a.body)
				assert.Equal(t, 1.0, retries)
				assert.Equal(t, int32(1), w2Hang.Load())
			} else {
				assert.Equal(t, 0.0, retries)
				assert.Equal(t, int32(0), w2Hang.Load(), "never sent to another worker")
			}
		})
	}
}
