package e2e

// examples/app/Dockerfile.supervised: the one-container form, obsproxy as the
// entrypoint of the app's image supervising its uvicorn workers (spec
// section 8). No Docker engine runs here: TestDockerSupervised reads the
// file and its ignore file; TestDockerSupervisedEntrypoint runs the image's
// ENTRYPOINT with the image's ENV against the project venv's uvicorn, as the
// container would run it.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const supervisedDockerfile = "examples/app/Dockerfile.supervised"

// dockerEnv returns the variables the ENV instructions of d set, each
// KEY=VALUE (values without blanks or quotes, as the project writes them).
func dockerEnv(t *testing.T, d dockerfile) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, args := range d.all("ENV") {
		for _, kv := range strings.Fields(args) {
			k, v, ok := strings.Cut(kv, "=")
			require.True(t, ok, "ENV %s: use KEY=VALUE", args)
			env[k] = v
		}
	}
	return env
}

// supervisedEntrypoint splits the image's ENTRYPOINT into the obsproxy
// binary, the obsproxy arguments before "--", and the worker command after it.
func supervisedEntrypoint(t *testing.T, final dockerfile) (bin string, flags, command []string) {
	t.Helper()
	entry := dockerfileExec(t, final, "ENTRYPOINT")
	sep := slices.Index(entry, "--")
	require.Positive(t, sep, "ENTRYPOINT %q: obsproxy [flags] -- COMMAND (spec section 1)", entry)
	require.Greater(t, len(entry), sep+1, "ENTRYPOINT %q: no command after --", entry)
	return entry[0], entry[1:sep], entry[sep+1:]
}

func TestDockerSupervised(t *testing.T) {
	d := parseDockerfile(t, supervisedDockerfile)
	froms := d.all("FROM")
	require.Len(t, froms, 2, "a build stage for obsproxy and the Python run stage")
	assert.Regexp(t, `^golang:1\.26\.\d+-bookworm AS \w+$`, froms[0], "builder")
	buildStage := strings.Fields(froms[0])[2]
	final := d.final()
	base := strings.Fields(final[0].args)[0]
	assert.Regexp(t, `^python:3\.\d+\.\d+-slim`, base)
	for _, f := range froms {
		assertImagePinned(t, strings.Fields(f)[0], supervisedDockerfile+" FROM")
	}
	assert.Equal(t, parseDockerfile(t, "examples/app/Dockerfile").all("FROM")[0], base,
		"the same Python image as the one-worker form")

	t.Run("obsproxy is built as the root Dockerfile and make build build it", func(t *testing.T) {
		var build string
		for _, in := range d {
			if in.cmd == "RUN" && in.stage == 0 && strings.Contains(in.args, "go build") {
				build = in.args
			}
		}
		require.NotEmpty(t, build, "no RUN go build in the build stage")
		assert.Contains(t, build, "CGO_ENABLED=0", "a static binary: the Python image's libc is not the builder's")
		assert.Contains(t, build, "-trimpath")
		assert.Contains(t, build, "./cmd/obsproxy")
		assert.Regexp(t, `-ldflags "-s -w -X main\.version=\$\{?VERSION\}?"`, build, "the Makefile's ldflags")
		assert.Contains(t, d.all("ARG"), "VERSION=0.1.0-dev", "the Makefile's default VERSION")
	})

	bin, flags, command := supervisedEntrypoint(t, final)

	t.Run("the entrypoint is the built obsproxy, and the health check runs it", func(t *testing.T) {
		var copied bool
		for _, c := range final.all("COPY") {
			f := strings.Fields(c)
			copied = copied || (f[0] == "--from="+buildStage && f[len(f)-1] == bin)
		}
		assert.True(t, copied, "the run stage copies the binary built in stage %s to %s: %v", buildStage, bin, final.all("COPY"))
		assert.Equal(t, []string{bin, "healthcheck"}, dockerfileExec(t, final, "HEALTHCHECK"))
		assert.Empty(t, flags, "settings belong in ENV, where `docker run -e` can change them; a flag would override it")
	})

	t.Run("the command is one uvicorn process per socket", func(t *testing.T) {
		args := command
		if len(args) > 2 && strings.HasPrefix(filepath.Base(args[0]), "python") && args[1] == "-m" {
			args = args[2:]
		}
		require.Equal(t, "uvicorn", filepath.Base(args[0]), "command %q", command)
		uds, ok := cmdFlag(args, "--uds")
		require.True(t, ok, "command %q: no --uds", command)
		assert.Equal(t, "{socket}", uds, "each process gets its own socket (OBSPROXY_WORKER_TRANSPORT=unix)")
		for _, tcp := range []string{"--host", "--port", "--fd"} {
			_, ok := cmdFlag(args, tcp)
			assert.False(t, ok, "command %q: %s would listen beside the socket", command, tcp)
		}
		workers, _ := cmdFlag(args, "--workers")
		assert.Contains(t, []string{"", "1"}, workers, "obsproxy runs the processes: one uvicorn process per worker")
		allow, _ := cmdFlag(args, "--forwarded-allow-ips")
		assert.Equal(t, "*", allow, "a unix socket has no peer address: uvicorn must trust obsproxy's X-Forwarded-For")
	})

	t.Run("ENV: a worker count of its own, a public listener on every interface, no secret", func(t *testing.T) {
		env := dockerEnv(t, final)
		n, err := strconv.Atoi(env["OBSPROXY_WORKERS"])
		require.NoError(t, err, "OBSPROXY_WORKERS=%q: the default (the CPUs obsproxy sees) is the host's in a container", env["OBSPROXY_WORKERS"])
		assert.True(t, n >= 1 && n <= 256, "OBSPROXY_WORKERS=%d outside 1..256", n)
		host, _, err := net.SplitHostPort(env["OBSPROXY_LISTEN_ADDR"])
		require.NoError(t, err, "OBSPROXY_LISTEN_ADDR")
		assert.Contains(t, []string{"", "0.0.0.0", "::"}, host, "the public listener must listen on every interface of the container")
		for _, k := range []string{"OBSPROXY_ADMIN_TOKEN", "OBSPROXY_DIAG_AUTH_TOKEN", "OBSPROXY_UPSTREAMS", "OBSPROXY_WORKER_COMMAND"} {
			assert.NotContains(t, env, k, "ENV %s in the image", k)
		}
		var exposed []string
		for _, e := range final.all("EXPOSE") {
			exposed = append(exposed, strings.Fields(e)...)
		}
		assert.Subset(t, exposed, []string{"8080", "9090"})
	})

	t.Run("non-root, the app and its pinned requirements", func(t *testing.T) {
		users := final.all("USER")
		require.NotEmpty(t, users, "the run stage sets no USER")
		assertNonRootUser(t, users[len(users)-1])
		assertInstallsPinnedRequirements(t, d, "examples/app/requirements.txt")
		assert.Contains(t, final.all("COPY"), "examples/app/app.py .", "the image runs examples/app/app.py")
	})

	t.Run("its build context holds what the build needs and nothing else", func(t *testing.T) {
		// BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile
		// instead of the context's .dockerignore.
		patterns := dockerignorePatterns(t, supervisedDockerfile+".dockerignore")
		for _, p := range []string{".git", "bin", ".venv", "e2e/harness_test.go", "docker-compose.yml", "examples/app/Dockerfile", "docs/docker.md"} {
			assert.True(t, dockerIgnored(patterns, p), "%s is sent to the Docker build", p)
		}
		for _, p := range append(obsproxyBuildFiles(t), "examples/app/app.py", "examples/app/requirements.txt") {
			assert.False(t, dockerIgnored(patterns, p), "%s is needed by the build but the ignore file leaves it out", p)
		}
	})
}

// TestDockerSupervisedEntrypoint runs what the container runs: the
// ENTRYPOINT, with the image's ENV, from a directory standing for its
// WORKDIR, and the venv's uvicorn found on PATH as the image's would be.
// Only the addresses change (free loopback ports). It needs supervisor mode
// (issue 13) in the obsproxy built from this tree.
func TestDockerSupervisedEntrypoint(t *testing.T) {
	settings := helpSettings(t)
	if !settings["OBSPROXY_WORKER_COMMAND"] {
		t.Skip("this obsproxy has no supervisor mode: obsproxy --help lists no OBSPROXY_WORKER_COMMAND")
	}
	final := parseDockerfile(t, supervisedDockerfile).final()
	imageEnv := dockerEnv(t, final)
	for k := range imageEnv {
		if strings.HasPrefix(k, "OBSPROXY_") {
			assert.True(t, settings[k], "ENV %s is not an obsproxy setting", k)
		}
	}
	_, flags, command := supervisedEntrypoint(t, final)
	workers, err := strconv.Atoi(imageEnv["OBSPROXY_WORKERS"])
	require.NoError(t, err)

	// WORKDIR /app holds app.py and requirements.txt, as COPY put them;
	// uvicorn finds app:app there through PYTHONPATH (start runs every
	// process from the repository root, which has no module "app").
	workdir := t.TempDir()
	for _, f := range []string{"app.py", "requirements.txt"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, "examples/app", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(workdir, f), b, 0o644))
	}
	port, adminPort := freePort(t), freePort(t)
	env := []string{"PATH=" + filepath.Dir(python) + ":/usr/local/bin:/usr/bin:/bin", "PYTHONPATH=" + workdir}
	for k, v := range imageEnv {
		env = append(env, k+"="+v)
	}
	env = append(env,
		fmt.Sprintf("OBSPROXY_LISTEN_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("OBSPROXY_ADMIN_ADDR=127.0.0.1:%d", adminPort),
		"OBSPROXY_WORKER_SOCKET_DIR="+filepath.Join(shortTempDir(t), "s"),
		"OBSPROXY_LOG_FORMAT=text")
	p := start(t, env, obsproxyBinary(t), slices.Concat(flags, []string{"--"}, command)...)
	in := &instance{proc: p, url: fmt.Sprintf("http://127.0.0.1:%d", port), admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}

	eventually(t, 60*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("obsproxy exited:\n%s", p.out.String())
		default:
		}
		resp, err := in.client.Get(in.url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "/health 200 with the image's workers up")

	// Every worker answers, named by obsproxy (OBSPROXY_WORKER_NAME).
	seen := map[string]bool{}
	eventually(t, 30*time.Second, func() bool {
		code, body := in.get(t, "/")
		require.Equal(t, 200, code, body)
		var ans struct{ Worker string }
		require.NoError(t, json.Unmarshal([]byte(body), &ans), body)
		seen[ans.Worker] = true
		return len(seen) == workers
	}, "answers from %d workers", workers)
	for i := 1; i <= workers; i++ {
		assert.True(t, seen[fmt.Sprintf("w%d", i)], "no answer from w%d: %v", i, seen)
		assert.Positive(t, in.value(t, "obsproxy_worker_pid", map[string]string{"worker": fmt.Sprintf("w%d", i)}))
	}

	// docker stop: SIGTERM to obsproxy, which stops its workers and exits 0.
	p.signal(syscall.SIGTERM)
	assert.Equal(t, 0, p.wait(t, 60*time.Second), "obsproxy's exit code on SIGTERM:\n%s", p.out.String())
}
