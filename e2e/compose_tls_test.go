package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// TestComposeTLSOverlay checks the optional TLS overlay: docker-compose
// accepts it over docker-compose.yml, it changes only the obsproxy service,
// its certificate paths lie in the read-only mount of deploy/tls, and the
// merged environment is a configuration obsproxy accepts once that
// directory holds a pair (made here with crypto/x509).
func TestComposeTLSOverlay(t *testing.T) {
	_, err := os.Stat(dockerCompose)
	require.NoError(t, err, "docker-compose is missing: run scripts/deps.sh (or make deps)")
	cmd := exec.Command(dockerCompose, "-f", "docker-compose.yml", "-f", "docker-compose.tls.yml", "config", "-q")
	cmd.Dir = repoRoot
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "LANG=C.UTF-8"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), "docker-compose config -q with the TLS overlay:\n%s", out.String())
	assert.NotContains(t, out.String(), "WARNING")

	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.tls.yml"))
	require.NoError(t, err)
	var overlay composeFile
	require.NoError(t, yaml.Unmarshal(raw, &overlay))
	base := loadCompose(t)
	proxyName, _ := base.roles(t)
	require.Equal(t, []string{proxyName}, keys(overlay.Services), "the overlay changes obsproxy only")
	o := overlay.Services[proxyName]

	// The certificate files are inside the read-only mount of deploy/tls.
	require.Len(t, o.Volumes, 1)
	src, dst, ok := strings.Cut(strings.TrimSuffix(o.Volumes[0], ":ro"), ":")
	require.True(t, ok)
	assert.True(t, strings.HasSuffix(o.Volumes[0], ":ro"), "mounted read-only")
	assert.Equal(t, "./deploy/tls", src)
	for _, v := range []string{"OBSPROXY_TLS_CERT_FILE", "OBSPROXY_TLS_KEY_FILE"} {
		assert.Equal(t, dst, filepath.Dir(o.Environment[v]), "%s must be in the mount", v)
	}
	// Published on loopback or not, only the public listener's port.
	listen := composeAddrPort(t, base.Services[proxyName].Environment["OBSPROXY_LISTEN_ADDR"])
	for _, spec := range o.Ports {
		assert.Equal(t, listen, parseComposePort(t, spec).containerPort, "%s", spec)
	}

	// The merged environment, with the files where the mount puts them.
	dir := t.TempDir()
	ca := newTestCA(t)
	certPEM, keyPEM := ca.issue(t, leafOpts{serial: 5})
	writePair(t, dir, certPEM, keyPEM)
	env := []string{"PATH=/usr/bin:/bin"}
	for k, v := range base.Services[proxyName].Environment {
		if _, over := o.Environment[k]; !over {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range o.Environment {
		env = append(env, k+"="+strings.Replace(v, dst, dir, 1))
	}
	check := exec.Command(obsproxyBinary(t), "healthcheck")
	check.Env = env
	var stderr bytes.Buffer
	check.Stderr = &stderr
	err = check.Run()
	// 1 (nothing of ours answers on 127.0.0.1:8080), or 0 if something
	// does; never 2, the exit code of a configuration obsproxy rejects.
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		assert.Equal(t, 1, ee.ExitCode(), "obsproxy rejects the TLS overlay's environment:\n%s", stderr.String())
		assert.Contains(t, stderr.String(), "https://", "healthcheck speaks HTTPS to a TLS listener")
	} else {
		require.NoError(t, err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
