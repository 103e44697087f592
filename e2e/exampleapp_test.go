package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExampleAppWorkerName: the example app names itself from WORKER_NAME
// when given, else from OBSPROXY_WORKER_NAME, which obsproxy sets for each
// process in supervisor mode (spec section 8), else pid-<pid>.
func TestExampleAppWorkerName(t *testing.T) {
	dir := shortTempDir(t)
	for _, tc := range []struct {
		name string
		env  []string
		want string // "" for pid-<pid>
	}{
		{"OBSPROXY_WORKER_NAME alone", []string{"OBSPROXY_WORKER_NAME=w7"}, "w7"},
		{"WORKER_NAME wins", []string{"OBSPROXY_WORKER_NAME=w7", "WORKER_NAME=by-hand"}, "by-hand"},
		{"neither", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(dir, tc.want+"x.sock")
			p := start(t, tc.env, python, "-m", "uvicorn", "app:app", "--app-dir", "examples/app",
				"--uds", sock, "--log-level", "warning")
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", sock)
				}}}
			var ans struct {
				Worker string
				PID    int
			}
			eventually(t, 20*time.Second, func() bool {
				select {
				case <-p.done:
					t.Fatalf("uvicorn exited:\n%s", p.out.String())
				default:
				}
				resp, err := client.Get("http://app/")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				require.NoError(t, json.Unmarshal(b, &ans), "%s", b)
				return true
			}, "uvicorn answering on %s", sock)
			want := tc.want
			if want == "" {
				want = fmt.Sprintf("pid-%d", ans.PID)
			}
			assert.Equal(t, want, ans.Worker)
		})
	}
}
