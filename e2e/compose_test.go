package e2e

// The container deployment: Dockerfile, .dockerignore, examples/app/Dockerfile
// and docker-compose.yml with its Prometheus configuration. No Docker engine
// runs here, so nothing is built or started: the tests read the files, check
// that they fit together (ports, addresses, paths, settings), and have
// docker-compose, promtool and obsproxy itself validate what they can offline.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// dockerCompose is Debian's docker-compose (1.29), installed by scripts/deps.sh.
const dockerCompose = "/usr/bin/docker-compose"

// composeFile is the part of docker-compose.yml the tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet  string `yaml:"subnet"`
				Gateway string `yaml:"gateway"`
				IPRange string `yaml:"ip_range"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
}

type composeService struct {
	Image       string       `yaml:"image"`
	Build       composeBuild `yaml:"build"`
	Command     composeList  `yaml:"command"`
	Environment composeEnv   `yaml:"environment"`
	// Ports in the short syntax, [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO].
	Ports       []string `yaml:"ports"`
	Volumes     []string `yaml:"volumes"`
	Healthcheck *struct {
		Test    composeList `yaml:"test"`
		Disable bool        `yaml:"disable"`
	} `yaml:"healthcheck"`
	StopGracePeriod string          `yaml:"stop_grace_period"`
	DependsOn       composeNames    `yaml:"depends_on"`
	Networks        composeNetworks `yaml:"networks"`
}

// composeBuild is `build: DIR` or `build: {context: DIR, dockerfile: FILE}`.
type composeBuild struct{ Context, Dockerfile string }

func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	var long struct{ Context, Dockerfile string }
	if err := n.Decode(&long); err != nil {
		return err
	}
	*b = composeBuild(long)
	return nil
}

// composeList is a command or healthcheck test: a list, or a string split on blanks.
type composeList []string

func (s *composeList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = strings.Fields(n.Value)
		return nil
	}
	var l []string
	err := n.Decode(&l)
	*s = l
	return err
}

// composeEnv is `environment:` as a map or as a list of KEY=VALUE.
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*e = composeEnv{}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			(*e)[k] = v
		}
		return nil
	}
	var m map[string]string
	err := n.Decode(&m)
	*e = m
	return err
}

// composeNames is `depends_on:` as a list of names or a map keyed by name.
type composeNames []string

func (s *composeNames) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			*s = append(*s, n.Content[i].Value)
		}
		return nil
	}
	var l []string
	err := n.Decode(&l)
	*s = l
	return err
}

// composeNetworks is a service's `networks:`, a list of names or a map of
// name to {ipv4_address}.
type composeNetworks map[string]string

func (s *composeNetworks) UnmarshalYAML(n *yaml.Node) error {
	*s = composeNetworks{}
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, name := range l {
			(*s)[name] = ""
		}
		return nil
	}
	var m map[string]*struct {
		IPv4 string `yaml:"ipv4_address"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	for name, v := range m {
		if v != nil {
			(*s)[name] = v.IPv4
		} else {
			(*s)[name] = ""
		}
	}
	return nil
}

// loadCompose parses docker-compose.yml (anchors and merge keys resolved).
func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	require.NoError(t, err)
	var c composeFile
	require.NoError(t, yaml.Unmarshal(raw, &c), "docker-compose.yml (ports must use the short syntax)")
	require.NotEmpty(t, c.Services)
	return c
}

// roles returns the name of the service built from the root
// Dockerfile (obsproxy) and the names of the services built from
// examples/app (the workers), sorted.
func (c composeFile) roles(t *testing.T) (proxy string, workers []string) {
	t.Helper()
	for name, s := range c.Services {
		if s.Build.Context == "" {
			continue
		}
		switch path.Clean(s.Build.Context) {
		case ".":
			require.Empty(t, proxy, "two services built from the root Dockerfile")
			proxy = name
		case "examples/app":
			workers = append(workers, name)
		}
	}
	require.NotEmpty(t, proxy, "no service is built from the root Dockerfile")
	require.NotEmpty(t, workers, "no service is built from examples/app")
	slices.Sort(workers)
	return proxy, workers
}

// serviceWithImage returns the service whose image starts with prefix.
func (c composeFile) serviceWithImage(t *testing.T, prefix string) (string, composeService) {
	t.Helper()
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, prefix) {
			return name, s
		}
	}
	t.Fatalf("no service runs an image %s*", prefix)
	return "", composeService{}
}

// cmdFlag returns the value of --name in args (as "--name value" or
// "--name=value") and whether it is there.
func cmdFlag(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// composePort is one entry of a service's `ports:`.
type composePort struct {
	hostIP        string // "" publishes on every interface
	hostPort      string // "" lets Docker choose
	containerPort string
}

func parseComposePort(t *testing.T, s string) composePort {
	t.Helper()
	spec, _, _ := strings.Cut(s, "/")
	var p composePort
	if strings.HasPrefix(spec, "[") { // [::1]:9091:9090
		end := strings.Index(spec, "]")
		require.Positive(t, end, "port %q", s)
		p.hostIP, spec = spec[1:end], strings.TrimPrefix(spec[end+1:], ":")
	}
	parts := strings.Split(spec, ":")
	switch {
	case len(parts) == 1:
		p.containerPort = parts[0]
	case len(parts) == 2:
		p.hostPort, p.containerPort = parts[0], parts[1]
	case len(parts) == 3 && p.hostIP == "":
		p.hostIP, p.hostPort, p.containerPort = parts[0], parts[1], parts[2]
	default:
		t.Fatalf("port %q: not [HOST_IP:][HOST_PORT:]CONTAINER_PORT", s)
	}
	return p
}

func (p composePort) loopback() bool {
	if strings.EqualFold(p.hostIP, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(p.hostIP)
	return err == nil && ip.IsLoopback()
}

// composeAddrPort returns the port of a listen address such as ":9090".
func composeAddrPort(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err, "listen address %q", addr)
	return port
}

// composeDuration parses a compose duration (Go syntax, as "25s" or "1m30s");
// empty means compose's default stop_grace_period, 10 s.
func composeDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	if s == "" {
		return 10 * time.Second
	}
	d, err := time.ParseDuration(s)
	require.NoError(t, err, "duration %q", s)
	return d
}

// bindSource maps a path inside a service's container to the repository path
// mounted there (a bind mount ./SRC:DST), or "" when none covers it.
func (s composeService) bindSource(containerPath string) string {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], ".") {
			continue
		}
		src, dst := parts[0], path.Clean(parts[1])
		if rel, ok := strings.CutPrefix(path.Clean(containerPath), dst); ok && (rel == "" || strings.HasPrefix(rel, "/")) {
			return path.Join(src, rel)
		}
	}
	return ""
}

// helpSettings returns every OBSPROXY_ variable that `obsproxy --help` lists.
func helpSettings(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(obsproxyBinary(t), "--help").Output()
	require.NoError(t, err, "obsproxy --help")
	vars := map[string]bool{}
	for _, v := range regexp.MustCompile(`\bOBSPROXY_[A-Z0-9_]+`).FindAllString(string(out), -1) {
		vars[v] = true
	}
	require.Greater(t, len(vars), 20, "obsproxy --help lists the settings:\n%s", out)
	return vars
}

func TestComposeConfig(t *testing.T) {
	_, err := os.Stat(dockerCompose)
	require.NoError(t, err, "docker-compose is missing: run scripts/deps.sh (or make deps)")
	cmd := exec.Command(dockerCompose, "-f", "docker-compose.yml", "config", "-q")
	cmd.Dir = repoRoot
	// No OBSPROXY_ or other variable from the caller: the file must work as it is.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "LANG=C.UTF-8"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "docker-compose config -q:\n%s%s", stdout.String(), stderr.String())
	assert.NotContains(t, stderr.String(), "WARNING", "docker-compose config warns (an unset variable?)")

	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	require.NoError(t, err)
	assert.False(t, strings.Contains(string(raw), "${"), "docker-compose.yml reads the host environment (${...}); it is meant to work with none set")
}

func TestComposePrometheusConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool is missing: run scripts/deps.sh (Debian package prometheus)")
	out, err := exec.Command(promtool, "check", "config", filepath.Join(repoRoot, "deploy/prometheus/prometheus.yml")).CombinedOutput()
	require.NoError(t, err, "promtool check config:\n%s", out)
	assert.Contains(t, string(out), "SUCCESS")
}

func TestComposeWiring(t *testing.T) {
	c := loadCompose(t)
	proxyName, workerNames := c.roles(t)
	proxy := c.Services[proxyName]
	env := proxy.Environment
	promName, prom := c.serviceWithImage(t, "prom/prometheus:")

	t.Run("only obsproxy publishes a port beyond loopback, and only its public listener", func(t *testing.T) {
		listenPort := composeAddrPort(t, env["OBSPROXY_LISTEN_ADDR"])
		public := 0
		for name, s := range c.Services {
			for _, spec := range s.Ports {
				p := parseComposePort(t, spec)
				if p.loopback() {
					continue
				}
				assert.Equal(t, proxyName, name, "%s publishes %q beyond loopback", name, spec)
				assert.Equal(t, listenPort, p.containerPort, "%s publishes %q beyond loopback, not its public listener", name, spec)
				public++
			}
		}
		assert.Equal(t, 1, public, "obsproxy publishes its public listener")
		for _, w := range workerNames {
			assert.Empty(t, c.Services[w].Ports, "worker %s is published; it must be reached through obsproxy only", w)
		}
	})

	t.Run("OBSPROXY_UPSTREAMS lists every worker service at the port its command listens on", func(t *testing.T) {
		healthPath := orDefault(env["OBSPROXY_UPSTREAM_HEALTH_PATH"], "/health")
		listed := map[string]bool{}
		for _, entry := range strings.Split(env["OBSPROXY_UPSTREAMS"], ",") {
			_, rawURL, _ := strings.Cut(strings.TrimSpace(entry), "=")
			scheme, hostPort, ok := strings.Cut(rawURL, "://")
			require.True(t, ok, "upstream %q is not [name=]scheme://host:port", entry)
			assert.Contains(t, []string{"http", "h2c"}, scheme, "upstream %q", entry)
			host, port, err := net.SplitHostPort(hostPort)
			require.NoError(t, err, "upstream %q", entry)
			w, ok := c.Services[host]
			require.True(t, ok, "upstream %q names no service", entry)
			require.Contains(t, workerNames, host, "upstream %q is not an examples/app worker", entry)
			listed[host] = true

			cmdPort, ok := cmdFlag(w.Command, "--port")
			require.True(t, ok, "worker %s: command %q has no --port", host, w.Command)
			assert.Equal(t, port, cmdPort, "upstream %q: worker %s listens on %s", entry, host, cmdPort)
			cmdHost, _ := cmdFlag(w.Command, "--host")
			assert.Contains(t, []string{"0.0.0.0", "::"}, cmdHost, "worker %s must listen on every interface of its container", host)
			workers, _ := cmdFlag(w.Command, "--workers")
			assert.Contains(t, []string{"", "1"}, workers, "worker %s: one uvicorn process per container", host)

			require.NotNil(t, w.Healthcheck, "worker %s has no healthcheck", host)
			assert.Contains(t, strings.Join(w.Healthcheck.Test, " "), ":"+port+healthPath,
				"worker %s: the healthcheck must GET %s on the port it listens on", host, healthPath)
		}
		for _, w := range workerNames {
			assert.True(t, listed[w], "worker service %s is not in OBSPROXY_UPSTREAMS", w)
		}
	})

	t.Run("workers trust obsproxy's X-Forwarded-For", func(t *testing.T) {
		addr := proxy.Networks[composeNetwork(t, proxy)]
		require.NotEmpty(t, addr, "obsproxy needs a fixed address for the workers' --forwarded-allow-ips")
		for _, w := range workerNames {
			allow, _ := cmdFlag(c.Services[w].Command, "--forwarded-allow-ips")
			assert.Contains(t, strings.Split(allow, ","), addr, "worker %s", w)
		}
	})

	t.Run("Prometheus scrapes the admin listener, and the admin allowlist admits it and nothing else", func(t *testing.T) {
		adminAddr := env["OBSPROXY_ADMIN_ADDR"]
		host, adminPort, err := net.SplitHostPort(adminAddr)
		require.NoError(t, err, "OBSPROXY_ADMIN_ADDR=%q", adminAddr)
		assert.Contains(t, []string{"", "0.0.0.0", "::"}, host, "the admin listener must leave the container's loopback for Prometheus")
		for _, spec := range proxy.Ports {
			if p := parseComposePort(t, spec); p.containerPort == adminPort {
				assert.True(t, p.loopback(), "the admin port is published as %q: loopback only", spec)
			}
		}

		configFile, _ := cmdFlag(prom.Command, "--config.file")
		require.NotEmpty(t, configFile, "prometheus: no --config.file")
		src := prom.bindSource(configFile)
		require.NotEmpty(t, src, "prometheus: %s is not mounted from the repository", configFile)
		scrape := loadComposePromConfig(t, src)
		var found bool
		for _, job := range scrape.ScrapeConfigs {
			for _, sc := range job.StaticConfigs {
				for _, target := range sc.Targets {
					if target == net.JoinHostPort(proxyName, adminPort) {
						found = true
						assert.Contains(t, []string{"", "/metrics"}, job.MetricsPath, "job %s", job.JobName)
						assert.Contains(t, []string{"", "http"}, job.Scheme, "job %s", job.JobName)
					}
				}
			}
		}
		assert.True(t, found, "%s scrapes no target %s:%s", src, proxyName, adminPort)

		require.Empty(t, env["OBSPROXY_ADMIN_TOKEN"], "a token in docker-compose.yml would be a committed secret")
		allow := parseAllowlist(t, env["OBSPROXY_ADMIN_IP_ALLOWLIST"])
		require.NotEmpty(t, allow, "OBSPROXY_ADMIN_IP_ALLOWLIST: obsproxy refuses a non-loopback admin listener without it")
		network := composeNetwork(t, proxy)
		require.Len(t, c.Networks[network].IPAM.Config, 1, "network %s needs a fixed subnet", network)
		ipam := c.Networks[network].IPAM.Config[0]
		subnet := netip.MustParsePrefix(ipam.Subnet)
		gateway := netip.MustParseAddr(ipam.Gateway)
		dynamic := netip.MustParsePrefix(ipam.IPRange)

		promAddr, err := netip.ParseAddr(prom.Networks[network])
		require.NoError(t, err, "%s needs a fixed ipv4_address on %s", promName, network)
		assert.True(t, subnet.Contains(promAddr), "%s's address %s outside %s", promName, promAddr, subnet)
		assert.False(t, dynamic.Contains(promAddr), "%s's fixed address %s inside the dynamic range %s", promName, promAddr, dynamic)
		assert.True(t, allowlistAdmits(allow, promAddr), "the allowlist %v does not admit %s (%s)", allow, promAddr, promName)
		for _, p := range allow {
			ok := p == netip.PrefixFrom(promAddr, 32) || p == netip.PrefixFrom(gateway, 32)
			assert.True(t, ok, "allowlist entry %s is neither %s's address nor the gateway (loopback publishing)", p, promName)
			assert.False(t, p.Overlaps(dynamic), "allowlist entry %s admits the dynamic range %s (workers, Grafana)", p, dynamic)
		}
		for name, s := range c.Services {
			if a, err := netip.ParseAddr(s.Networks[network]); err == nil && name != promName {
				assert.False(t, allowlistAdmits(allow, a), "the allowlist admits %s (%s)", a, name)
				assert.False(t, dynamic.Contains(a), "%s's fixed address %s inside the dynamic range %s", name, a, dynamic)
			}
		}
	})

	t.Run("every OBSPROXY_ variable is a setting", func(t *testing.T) {
		settings := helpSettings(t)
		for name, s := range c.Services {
			for k := range s.Environment {
				if strings.HasPrefix(k, "OBSPROXY_") {
					assert.True(t, settings[k], "%s sets %s, which obsproxy --help does not list", name, k)
				}
			}
		}
	})

	t.Run("healthchecks", func(t *testing.T) {
		for name, s := range c.Services {
			require.NotNil(t, s.Healthcheck, "%s has no healthcheck", name)
			assert.False(t, s.Healthcheck.Disable, "%s", name)
			require.NotEmpty(t, s.Healthcheck.Test, "%s", name)
			assert.NotEqual(t, "NONE", s.Healthcheck.Test[0], "%s", name)
		}
		entrypoint := dockerfileExec(t, parseDockerfile(t, "Dockerfile").final(), "ENTRYPOINT")
		assert.Equal(t, composeList{"CMD", entrypoint[0], "healthcheck"}, proxy.Healthcheck.Test,
			"obsproxy's healthcheck runs `obsproxy healthcheck` (GET the local /health)")
	})

	t.Run("shutdown: drain and in-flight requests fit in stop_grace_period", func(t *testing.T) {
		drain := composeDuration(t, orDefault(env["OBSPROXY_DRAIN_DELAY"], "0s"))
		shutdown := composeDuration(t, orDefault(env["OBSPROXY_SHUTDOWN_TIMEOUT"], "30s"))
		assert.Positive(t, drain, "OBSPROXY_DRAIN_DELAY: let /health report draining before the listener closes")
		grace := composeDuration(t, proxy.StopGracePeriod)
		assert.Less(t, drain+shutdown, grace, "obsproxy: drain delay %v + shutdown timeout %v must end before Docker's SIGKILL at %v", drain, shutdown, grace)
		for _, w := range workerNames {
			s := c.Services[w]
			v, ok := cmdFlag(s.Command, "--timeout-graceful-shutdown")
			require.True(t, ok, "worker %s: no --timeout-graceful-shutdown", w)
			secs, err := strconv.Atoi(v)
			require.NoError(t, err)
			assert.Less(t, time.Duration(secs)*time.Second, composeDuration(t, s.StopGracePeriod), "worker %s", w)
		}
		// Compose stops dependents first: obsproxy drains while its workers still answer.
		for _, w := range workerNames {
			assert.Contains(t, proxy.DependsOn, w, "obsproxy must depend on %s so that it stops first", w)
		}
	})

	t.Run("mounted and built paths exist in the repository", func(t *testing.T) {
		for name, s := range c.Services {
			for _, v := range s.Volumes {
				src, _, _ := strings.Cut(v, ":")
				if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
					_, err := os.Stat(filepath.Join(repoRoot, src))
					assert.NoError(t, err, "%s mounts %s", name, src)
				} else {
					assert.Contains(t, c.Volumes, src, "%s mounts an undeclared volume %s", name, src)
				}
			}
			if s.Build.Context != "" {
				_, err := os.Stat(filepath.Join(repoRoot, s.Build.Context, orDefault(s.Build.Dockerfile, "Dockerfile")))
				assert.NoError(t, err, "%s builds %s", name, s.Build.Context)
			}
		}
	})

	t.Run("pulled images are pinned", func(t *testing.T) {
		for name, s := range c.Services {
			if s.Build.Context != "" {
				continue
			}
			assertImagePinned(t, s.Image, name)
		}
	})
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// composeNetwork returns the one network a service is attached to.
func composeNetwork(t *testing.T, s composeService) string {
	t.Helper()
	require.Len(t, s.Networks, 1, "expected one network, got %v", s.Networks)
	for n := range s.Networks {
		return n
	}
	return ""
}

// parseAllowlist parses comma-separated IPs and CIDRs like obsproxy's
// OBSPROXY_ADMIN_IP_ALLOWLIST (a bare IP is a single-address prefix).
func parseAllowlist(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			require.NoError(t, err)
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		require.NoError(t, err)
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

func allowlistAdmits(allow []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(allow, func(p netip.Prefix) bool { return p.Contains(a) })
}

// assertImagePinned checks that an image reference names a version: a digest, or
// a tag other than latest that carries a version number.
func assertImagePinned(t *testing.T, image, where string) {
	t.Helper()
	if strings.Contains(image, "@sha256:") {
		return
	}
	slash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if !assert.Greater(t, colon, slash, "%s: image %q has no tag", where, image) {
		return
	}
	tag := image[colon+1:]
	assert.NotEqual(t, "latest", tag, "%s: image %q", where, image)
	assert.Regexp(t, `\d+\.\d+`, tag, "%s: image %q: pin a version", where, image)
}

// composePromConfig is the part of prometheus.yml the tests read.
type composePromConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		Scheme        string `yaml:"scheme"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func loadComposePromConfig(t *testing.T, rel string) composePromConfig {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, rel))
	require.NoError(t, err)
	var pc composePromConfig
	require.NoError(t, yaml.Unmarshal(raw, &pc), rel)
	return pc
}

func TestComposeEnvironmentIsValidObsproxyConfig(t *testing.T) {
	// obsproxy validates its whole configuration before anything else and exits
	// 2 on a bad one; `obsproxy healthcheck` does the same, then GETs the local
	// /health (127.0.0.1:8080 here, where nothing of ours listens): 1, or 0 if
	// something answers 200 there. Either way, not 2.
	c := loadCompose(t)
	proxyName, _ := c.roles(t)
	env := map[string]string{}
	for _, in := range parseDockerfile(t, "Dockerfile").final() {
		if in.cmd == "ENV" {
			k, v, ok := strings.Cut(in.args, "=")
			require.True(t, ok, "ENV %s: use KEY=VALUE", in.args)
			env[k] = v
		}
	}
	for k, v := range c.Services[proxyName].Environment {
		env[k] = v
	}
	cmd := exec.Command(obsproxyBinary(t), "healthcheck")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		require.NotEqual(t, 2, ee.ExitCode(), "obsproxy rejects the environment of docker-compose.yml:\n%s", stderr.String())
		require.Equal(t, 1, ee.ExitCode(), "%s", stderr.String())
	} else {
		require.NoError(t, err)
	}
	assert.NotContains(t, stderr.String(), "invalid")
}

// dockerInstr is one instruction of a Dockerfile, continuation lines joined.
type dockerInstr struct {
	cmd   string // upper case, e.g. RUN
	args  string
	stage int // index of the FROM it follows
}

type dockerfile []dockerInstr

// parseDockerfile reads the Dockerfile at rel (from the repository root).
func parseDockerfile(t *testing.T, rel string) dockerfile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, rel))
	require.NoError(t, err)
	var out dockerfile
	stage := -1
	var cur strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		full := strings.TrimSpace(cur.String())
		cur.Reset()
		if full == "" {
			continue
		}
		cmd, args, _ := strings.Cut(full, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, dockerInstr{cmd: cmd, args: strings.TrimSpace(args), stage: stage})
	}
	require.NotEmpty(t, out, rel)
	return out
}

// final returns the instructions of the last stage, its FROM first.
func (d dockerfile) final() dockerfile {
	last := d[len(d)-1].stage
	var out dockerfile
	for _, in := range d {
		if in.stage == last {
			out = append(out, in)
		}
	}
	return out
}

func (d dockerfile) all(cmd string) []string {
	var out []string
	for _, in := range d {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// dockerfileExec returns the exec-form (JSON array) argument of the last cmd
// instruction of d; for HEALTHCHECK, the array after its options and CMD.
func dockerfileExec(t *testing.T, d dockerfile, cmd string) []string {
	t.Helper()
	args := d.all(cmd)
	require.NotEmpty(t, args, "no %s", cmd)
	arg := args[len(args)-1]
	if cmd == "HEALTHCHECK" {
		i := strings.Index(arg, "CMD ")
		require.GreaterOrEqual(t, i, 0, "HEALTHCHECK %s: no CMD", arg)
		arg = arg[i+len("CMD "):]
	}
	var out []string
	require.NoError(t, json.Unmarshal([]byte(arg), &out), "%s %s: use the exec form [\"...\"]", cmd, arg)
	require.NotEmpty(t, out)
	return out
}

// assertNonRootUser checks a USER argument: a user other than root, by name or number.
func assertNonRootUser(t *testing.T, user string) {
	t.Helper()
	name, _, _ := strings.Cut(user, ":")
	assert.NotContains(t, []string{"", "root", "0"}, name, "USER %q runs as root", user)
}

func TestDockerfile(t *testing.T) {
	d := parseDockerfile(t, "Dockerfile")
	froms := d.all("FROM")
	require.GreaterOrEqual(t, len(froms), 2, "a multi-stage build")
	assert.Regexp(t, `^golang:1\.26\.\d+-bookworm AS \w+$`, froms[0], "builder")
	for _, f := range froms {
		if img := strings.Fields(f)[0]; img != "scratch" {
			assertImagePinned(t, img, "Dockerfile FROM")
		}
	}

	var build string
	for _, r := range d.all("RUN") {
		if strings.Contains(r, "go build") {
			build = r
		}
	}
	require.NotEmpty(t, build, "no RUN go build")
	assert.Contains(t, build, "CGO_ENABLED=0", "a static binary")
	assert.Contains(t, build, "-trimpath")
	assert.Contains(t, build, "./cmd/obsproxy")
	assert.Regexp(t, `-ldflags "-s -w -X main\.version=\$\{?VERSION\}?"`, build, "the Makefile's ldflags")
	assert.Contains(t, d.all("ARG"), "VERSION=0.1.0-dev", "the Makefile's default VERSION")

	final := d.final()
	base := strings.Fields(final[0].args)[0]
	assert.True(t, base == "scratch" || strings.HasPrefix(base, "gcr.io/distroless/static"),
		"the final image runs the static binary alone, got %s", base)
	users := final.all("USER")
	require.NotEmpty(t, users, "the final stage sets no USER")
	assertNonRootUser(t, users[len(users)-1])

	entry := dockerfileExec(t, final, "ENTRYPOINT")
	require.Len(t, entry, 1)
	var copied bool
	for _, c := range final.all("COPY") {
		f := strings.Fields(c)
		copied = copied || (strings.HasPrefix(f[0], "--from=") && f[len(f)-1] == entry[0])
	}
	assert.True(t, copied, "the final stage copies the built binary to %s", entry[0])
	assert.Equal(t, []string{entry[0], "healthcheck"}, dockerfileExec(t, final, "HEALTHCHECK"))

	var exposed []string
	for _, e := range final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(e)...)
	}
	assert.Subset(t, exposed, []string{"8080", "9090"})

	settings := helpSettings(t)
	for _, e := range final.all("ENV") {
		k, v, _ := strings.Cut(e, "=")
		assert.True(t, settings[k], "ENV %s is not an obsproxy setting", k)
		if k == "OBSPROXY_LISTEN_ADDR" {
			host, _, err := net.SplitHostPort(v)
			require.NoError(t, err)
			assert.Contains(t, []string{"", "0.0.0.0", "::"}, host, "the public listener must listen on every interface of the container")
		}
		assert.NotEqual(t, "OBSPROXY_ADMIN_TOKEN", k, "a token baked into the image")
	}
}

func TestDockerignore(t *testing.T) {
	// The deny-list must keep out what the build does not need and keep in
	// every file of every package cmd/obsproxy is built from.
	patterns := dockerignorePatterns(t, ".dockerignore")
	for _, p := range []string{".git", "bin", ".venv", "e2e/harness_test.go", "examples/app/app.py", "docker-compose.yml"} {
		assert.True(t, dockerIgnored(patterns, p), "%s is sent to the Docker build", p)
	}
	for _, p := range obsproxyBuildFiles(t) {
		assert.False(t, dockerIgnored(patterns, p), "%s is needed by the build but .dockerignore leaves it out", p)
	}
}

// dockerignorePatterns reads the patterns of the ignore file at rel (from the
// repository root), comments and blank lines left out.
func dockerignorePatterns(t *testing.T, rel string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, rel))
	require.NoError(t, err)
	var patterns []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	require.NotEmpty(t, patterns, rel)
	return patterns
}

// obsproxyBuildFiles returns every file `go build ./cmd/obsproxy` reads from
// the repository (slash-separated, relative to its root): go.mod, go.sum and
// the Go and embedded files of every package of this module it imports.
func obsproxyBuildFiles(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`, "./cmd/obsproxy")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	require.NoError(t, err, "go list")
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		dir, err := filepath.Rel(repoRoot, f[0])
		require.NoError(t, err)
		for _, name := range f[1:] {
			needed = append(needed, filepath.ToSlash(filepath.Join(dir, name)))
		}
	}
	require.Greater(t, len(needed), 5)
	return needed
}

// dockerIgnored reports whether .dockerignore patterns exclude the file p
// (slash-separated, relative to the context): like Docker, the last matching
// pattern wins, a leading ! re-includes, a pattern matches a path or any of its
// parent directories, and **/ matches any number of directories.
func dockerIgnored(patterns []string, p string) bool {
	ignored := false
	for _, pat := range patterns {
		negate := strings.HasPrefix(pat, "!")
		pat = strings.TrimPrefix(strings.TrimPrefix(pat, "!"), "/")
		if dockerMatch(pat, p) {
			ignored = !negate
		}
	}
	return ignored
}

func dockerMatch(pat, p string) bool {
	parts := strings.Split(p, "/")
	for i := len(parts); i > 0; i-- { // the path, then each parent directory
		candidate := strings.Join(parts[:i], "/")
		if rest, ok := strings.CutPrefix(pat, "**/"); ok {
			for j := range i {
				if m, _ := path.Match(rest, strings.Join(parts[j:i], "/")); m {
					return true
				}
			}
			continue
		}
		if m, _ := path.Match(pat, candidate); m {
			return true
		}
	}
	return false
}

func TestDockerExampleApp(t *testing.T) {
	d := parseDockerfile(t, "examples/app/Dockerfile")
	froms := d.all("FROM")
	require.Len(t, froms, 1)
	assert.Regexp(t, `^python:3\.\d+\.\d+-slim`, froms[0])
	assertImagePinned(t, froms[0], "examples/app/Dockerfile")
	users := d.all("USER")
	require.NotEmpty(t, users)
	assertNonRootUser(t, users[len(users)-1])

	hc := strings.Join(dockerfileExec(t, d, "HEALTHCHECK"), " ")
	assert.Contains(t, hc, "urllib.request")
	cmd := dockerfileExec(t, d, "CMD")
	assert.Equal(t, "uvicorn", cmd[0])
	port, ok := cmdFlag(cmd, "--port")
	require.True(t, ok)
	assert.Contains(t, hc, "127.0.0.1:"+port+"/health", "the healthcheck GETs /health on the port uvicorn listens on")
	host, _ := cmdFlag(cmd, "--host")
	assert.Equal(t, "0.0.0.0", host)
	workers, _ := cmdFlag(cmd, "--workers")
	assert.Contains(t, []string{"", "1"}, workers, "one uvicorn process per container")

	assertInstallsPinnedRequirements(t, d, "requirements.txt")
	assert.Contains(t, d.all("COPY"), "app.py .", fmt.Sprintf("the image runs examples/app/app.py; COPY: %v", d.all("COPY")))
}

// assertInstallsPinnedRequirements checks that d copies
// examples/app/requirements.txt (from src in its build context) into its
// working directory and pip-installs it, and that the file pins every
// package as name==version, the ASGI servers and FastAPI included: the image
// gets the releases the project venv and the tests use.
func assertInstallsPinnedRequirements(t *testing.T, d dockerfile, src string) {
	t.Helper()
	assert.Contains(t, d.final().all("COPY"), src+" .", "the image copies the pinned requirements")
	var installs bool
	for _, r := range d.final().all("RUN") {
		installs = installs || (strings.Contains(r, "pip install") && strings.Contains(r, "-r requirements.txt"))
	}
	assert.True(t, installs, "no RUN pip install -r requirements.txt: %v", d.final().all("RUN"))

	raw, err := os.ReadFile(filepath.Join(repoRoot, "examples/app/requirements.txt"))
	require.NoError(t, err)
	pinned := map[string]bool{}
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		m := regexp.MustCompile(`^([A-Za-z0-9._-]+)==[0-9][0-9A-Za-z.]*$`).FindStringSubmatch(l)
		if assert.NotNil(t, m, "requirements.txt: %q is not pinned as name==version", l) {
			pinned[strings.ToLower(m[1])] = true
		}
	}
	for _, p := range []string{"fastapi", "starlette", "uvicorn", "websockets"} {
		assert.True(t, pinned[p], "requirements.txt does not pin %s", p)
	}
}
