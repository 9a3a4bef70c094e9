package credserver_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rolekeeper/rolekeeper/pkg/credserver"
	"github.com/rolekeeper/rolekeeper/pkg/renewal"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/atomicdir"
	"github.com/rolekeeper/rolekeeper/test/cluster"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

var operator = ststest.Principal{
	AccessKeyID:     "AKIAOPERATOR00000001",
	SecretAccessKey: "operatorSecretKey0000000000000000000000001",
	Arn:             "arn:aws:iam::000000000000:user/rolekeeper",
}

// sdk is one AWS SDK client program, a separate process in its default configuration; each
// assumes its own role, so the emulator's records tell the SDKs apart.
type sdk struct {
	name, role string
	// command runs the client for duration, calling every interval, at most calls times (0: no
	// limit).
	command func(duration, interval time.Duration, calls int) *exec.Cmd
}

// need skips (or, under ROLEKEEPER_REQUIRE_TOOLS=1 as in .ci/run, fails) when a client is missing.
func need(t *testing.T, format string, a ...any) {
	t.Helper()
	if os.Getenv("ROLEKEEPER_REQUIRE_TOOLS") == "1" {
		t.Fatalf(format, a...)
	}
	t.Skipf(format, a...)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// TestMain removes the binaries built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// built returns the rolekeeper binary and the aws-sdk-go-v2 client (hack/sdkpoll), built once.
func built(t *testing.T) (rolekeeper, gopoll string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "rolekeeper-sdk-test-")
		for _, b := range [][2]string{{"rolekeeper", "."}, {"sdkpoll", "./hack/sdkpoll"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b[0]), b[1])
			cmd.Dir = testenv.Root()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "rolekeeper"), filepath.Join(binDir, "sdkpoll")
}

// cliVersion returns the AWS CLI's version and the botocore version it runs on.
func cliVersion(t *testing.T) (cli, botocore string) {
	t.Helper()
	if _, err := exec.LookPath("aws"); err != nil {
		need(t, "the AWS CLI is not installed (Debian package awscli); .ci/run installs it")
	}
	out, err := exec.Command("aws", "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("aws --version: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`aws-cli/(\S+)`).FindSubmatch(out)
	b := regexp.MustCompile(`botocore/(\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("aws --version printed %q", out)
	}
	if b != nil {
		botocore = string(b[1])
	}
	return string(m[1]), botocore
}

func atLeast(version, min string) bool {
	a, b := strings.Split(version, "."), strings.Split(min, ".")
	for i := range b {
		if i >= len(a) {
			return false
		}
		x, _ := strconv.Atoi(a[i])
		y, _ := strconv.Atoi(b[i])
		if x != y {
			return x > y
		}
	}
	return true
}

// clients returns the three SDK clients: aws-sdk-go-v2, botocore (the AWS CLI's own, run by the
// interpreter the CLI runs on) and the AWS SDK for JavaScript v3 (installed by `make sdk-js`).
func clients(t *testing.T) []sdk {
	t.Helper()
	_, gopoll := built(t)
	dir := filepath.Join(testenv.Root(), "hack", "sdkpoll")
	cli, botocoreVersion := cliVersion(t)
	// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: AWS CLI 1.30.0 and 2.15.0 (botocore 1.34.41).
	if supported := atLeast(cli, "2.15.0") || (strings.HasPrefix(cli, "1.") && atLeast(cli, "1.30.0")); !supported {
		need(t, "AWS CLI %s predates AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (1.30.0, 2.15.0)", cli)
	}
	python := pythonOfCLI(t, botocoreVersion)
	node, err := exec.LookPath("node")
	if err != nil {
		need(t, "node is not installed (Debian package nodejs); .ci/run installs it")
	}
	modules, _ := filepath.Glob(filepath.Join(testenv.Root(), "bin", "sdk-js-*", "node_modules"))
	if len(modules) == 0 {
		need(t, "the AWS SDK for JavaScript v3 is not installed: run `make sdk-js`")
	}
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }
	return []sdk{
		{"aws-sdk-go-v2", "go", func(d, i time.Duration, n int) *exec.Cmd {
			return exec.Command(gopoll, "-duration", d.String(), "-interval", i.String(), "-calls", strconv.Itoa(n))
		}},
		{"botocore " + botocoreVersion + " (AWS CLI " + cli + ")", "botocore", func(d, i time.Duration, n int) *exec.Cmd {
			return exec.Command(python, filepath.Join(dir, "botocore_poll.py"), secs(d), secs(i), strconv.Itoa(n))
		}},
		{"aws-sdk-js-v3 (" + filepath.Base(filepath.Dir(modules[len(modules)-1])) + ")", "js", func(d, i time.Duration, n int) *exec.Cmd {
			cmd := exec.Command(node, filepath.Join(dir, "js_poll.cjs"), secs(d), secs(i), strconv.Itoa(n))
			cmd.Env = []string{"NODE_PATH=" + modules[len(modules)-1]}
			return cmd
		}},
	}
}

// pythonOfCLI finds the Python that runs the AWS CLI: the interpreter whose botocore is the one
// `aws --version` reports.
func pythonOfCLI(t *testing.T, botocoreVersion string) string {
	t.Helper()
	var candidates []string
	if path, err := exec.LookPath("aws"); err == nil {
		if out, err := exec.Command("pyenv", "which", "aws").Output(); err == nil {
			path = strings.TrimSpace(string(out))
		}
		if f, err := os.Open(path); err == nil {
			line, _ := bufio.NewReader(f).ReadString('\n')
			_ = f.Close()
			if strings.HasPrefix(line, "#!") && strings.Contains(line, "python") {
				candidates = append(candidates, strings.Fields(strings.TrimPrefix(line, "#!"))[0])
			}
		}
	}
	candidates = append(candidates, "python3")
	probe := "try:\n from botocore import __version__ as v\nexcept ImportError:\n from awscli.botocore import __version__ as v\nprint(v)"
	for _, py := range candidates {
		out, err := exec.Command(py, "-c", probe).Output()
		if err == nil && (botocoreVersion == "" || strings.TrimSpace(string(out)) == botocoreVersion) {
			return py
		}
	}
	need(t, "no Python with the AWS CLI's botocore %s among %v", botocoreVersion, candidates)
	return ""
}

// clientEnv is all the environment an SDK client gets: the container credentials variables the
// webhook sets, the emulator as STS endpoint, and nothing to fall back on.
func clientEnv(t *testing.T, endpoint, uri, tokenFile string) []string {
	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=" + uri,
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + tokenFile,
		"AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_ENDPOINT_URL_STS=" + endpoint,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=",
	}
	if v := os.Getenv("PYENV_ROOT"); v != "" {
		env = append(env, "PYENV_ROOT="+v)
	}
	return env
}

// issuer assumes one role at the emulator with the operator's client (pkg/sts) and writes the
// credentials into a Secret volume directory the way the kubelet does.
type issuer struct {
	client *sts.Client
	role   string
	dir    string
	keys   []string
	// expiration overrides the AWS_CREDENTIAL_EXPIRATION written (0: the real one).
	expiration time.Duration
}

func newIssuer(t *testing.T, emu *ststest.Server, role, dir string) *issuer {
	t.Helper()
	client := sts.New(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(operator.AccessKeyID, operator.SecretAccessKey, "")},
		sts.Options{Region: "us-east-1", Endpoint: emu.URL})
	return &issuer{client: client, role: role, dir: dir}
}

func (is *issuer) issue(ctx context.Context, duration int32) (*sts.Result, error) {
	res, err := is.client.AssumeRole(ctx, sts.AssumeRoleRequest{RoleArn: "arn:aws:iam::111122223333:role/" + is.role, SessionName: is.role, DurationSeconds: duration}, nil)
	if err != nil {
		return nil, err
	}
	exp := res.Credentials.Expiration
	if is.expiration != 0 {
		exp = time.Now().Add(is.expiration)
	}
	c := res.Credentials
	if err := atomicdir.Write(is.dir, secretdata.Render(secretdata.Input{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Expiration: exp, Region: "us-east-1"})); err != nil {
		return nil, err
	}
	is.keys = append(is.keys, c.AccessKeyID)
	return res, nil
}

// calls returns the emulator's GetCallerIdentity calls made with role's sessions: the access
// keys used and the error codes answered.
func calls(emu *ststest.Server, role string) (keys map[string]int, codes map[string]int) {
	keys, codes = map[string]int{}, map[string]int{}
	for _, c := range emu.Calls() {
		if c.Action != "GetCallerIdentity" || !strings.Contains(c.Caller, ":assumed-role/"+role+"/") {
			continue
		}
		keys[c.CallerAccessKey]++
		if c.Code != "" {
			codes[c.Code]++
		}
	}
	return keys, codes
}

// outcome counts a client's "ok" and "error" lines and keeps the first errors.
func outcome(out []byte) (ok int, errs []string) {
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "ok "):
			ok++
		case line != "":
			errs = append(errs, line)
		}
	}
	return ok, errs
}

// TestSDKsAcrossRotations: each SDK client runs as one process, in its default configuration,
// against its own `rolekeeper serve-credentials` process, while its role's credentials are
// issued by the emulator (time-scaled: a 900 s session lasts 15 s) and rotated at the
// operator's renewal time by kubelet-style swaps of the Secret volume. Every call must
// authenticate with the credentials the sidecar serves, none may meet ExpiredToken, and each
// client must use at least three of the rotated keys without being restarted. The AWS CLI
// itself also runs once after every rotation.
//
// Sessions this short are within every SDK's own refresh window, so the clients ask the sidecar
// again on each call here; TestSDKRefreshWindows shows the refresh points for real lifetimes.
func TestSDKsAcrossRotations(t *testing.T) {
	t.Parallel()
	rolekeeper, _ := built(t)
	sdks := clients(t)
	const timeScale, duration = 60, 900
	emu := ststest.New(ststest.Options{Principals: []ststest.Principal{operator}, TimeScale: timeScale}).Start()
	defer emu.Close()
	run := 40 * time.Second
	// sidecars live until the test ends; ctx (the rotations) until every client is done.
	sidecars, stopSidecars := context.WithCancel(context.Background())
	defer stopSidecars()
	ctx, cancel := context.WithTimeout(sidecars, run+30*time.Second)
	defer cancel()
	var clientsDone sync.WaitGroup
	var running []*exec.Cmd

	type result struct {
		out, cliOut []byte
		err         error
		rotations   int
		logs        *bytes.Buffer
		token       []byte
		issued      []string
		cliRuns     int
	}
	results := make([]*result, len(sdks))
	var wg sync.WaitGroup
	for i, s := range sdks {
		dir := t.TempDir()
		is := newIssuer(t, emu, s.role, filepath.Join(dir, "secret"))
		res, err := is.issue(ctx, duration)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, "token"), 0o755); err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(cluster.FreePort())
		flags := []string{"--port=" + port, "--secret-dir=" + is.dir, "--token-file=" + filepath.Join(dir, "token", "token")}
		sidecar := exec.CommandContext(sidecars, rolekeeper, append([]string{"serve-credentials"}, flags...)...)
		r := &result{logs: &bytes.Buffer{}}
		results[i] = r
		sidecar.Stderr = r.logs
		if err := sidecar.Start(); err != nil {
			t.Fatal(err)
		}
		running = append(running, sidecar)
		defer func() { _ = sidecar.Process.Kill(); _ = sidecar.Wait() }() // when the test fails early
		var probeOutput []byte                                            // the kubelet may put a startup probe's output in an event
		for deadline := time.Now().Add(10 * time.Second); ; {
			out, err := exec.Command(rolekeeper, append([]string{"serve-credentials", "--probe"}, flags...)...).CombinedOutput()
			probeOutput = append(probeOutput, out...)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the sidecar did not become ready:\n%s", s.name, r.logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
		r.token, _ = os.ReadFile(filepath.Join(dir, "token", "token"))
		if bytes.Contains(probeOutput, r.token) {
			t.Fatalf("%s: the probe printed the token", s.name)
		}
		env := clientEnv(t, emu.URL, "http://127.0.0.1:"+port+credserver.CredentialsPath, filepath.Join(dir, "token", "token"))
		wg.Go(func() { // rotate at the operator's renewal time until the clients are done
			defer func() { r.issued = is.keys }()
			for {
				at := renewal.Time(res.IssuedAt, res.Credentials.Expiration, renewal.Policy{}, s.role)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(at)):
				}
				if res, err = is.issue(ctx, duration); err != nil {
					if ctx.Err() == nil {
						t.Errorf("%s: rotation: %v", s.name, err)
					}
					return
				}
				r.rotations++
				if s.role == "botocore" { // and the AWS CLI itself, signing with what the sidecar serves
					cli := exec.CommandContext(ctx, "aws", "sts", "get-caller-identity", "--output", "text", "--query", "Arn")
					cli.Env = env
					out, err := cli.CombinedOutput()
					r.cliRuns++
					if err != nil || !strings.Contains(string(out), ":assumed-role/botocore/") {
						r.cliOut = append(r.cliOut, out...)
					}
				}
			}
		})
		clientsDone.Go(func() {
			cmd := s.command(run, 250*time.Millisecond, 0)
			cmd.Env = append(cmd.Env, env...)
			r.out, r.err = cmd.Output()
			if ee := (*exec.ExitError)(nil); errors.As(r.err, &ee) {
				r.err = fmt.Errorf("%w: %s", ee, ee.Stderr)
			}
		})
	}
	clientsDone.Wait()
	cancel() // stop rotating
	wg.Wait()
	stopSidecars() // and the sidecars, whose logs are checked below
	for _, c := range running {
		_ = c.Wait()
	}
	for i, s := range sdks {
		r := results[i]
		keys, codes := calls(emu, s.role)
		ok, errs := outcome(r.out)
		t.Logf("%s: %d calls, %d rotations, %d distinct access keys used, error codes %v", s.name, ok, r.rotations, len(keys), codes)
		if r.err != nil || len(errs) > 0 || ok == 0 {
			t.Errorf("%s: exit %v, %d ok, errors: %v", s.name, r.err, ok, first(errs, 3))
		}
		if len(codes) > 0 {
			t.Errorf("%s: the emulator answered %v", s.name, codes)
		}
		if r.rotations < 3 || len(keys) < 3 {
			t.Errorf("%s: %d rotations, %d keys used, want at least 3 of each", s.name, r.rotations, len(keys))
		}
		for k := range keys {
			if !contains(r.issued, k) {
				t.Errorf("%s: signed with %s, which was never in its Secret", s.name, k)
			}
		}
		if s.role == "botocore" && (r.cliRuns < 3 || len(r.cliOut) > 0) {
			t.Errorf("AWS CLI: %d runs, failures:\n%s", r.cliRuns, r.cliOut)
		}
		if len(r.token) != 43 || bytes.Contains(r.logs.Bytes(), r.token) || bytes.Contains(r.logs.Bytes(), []byte("SecretAccessKey")) {
			t.Errorf("%s: token %d bytes; sidecar logs must hold neither it nor credentials:\n%s", s.name, len(r.token), r.logs)
		}
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// countingServer serves credserver's handler on loopback and counts the requests.
func countingServer(t *testing.T, dir, token string) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	h := credserver.New(credserver.Options{Dir: dir, Token: token})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestSDKRefreshWindows checks the premises of the served Expiration against the real SDKs at
// real time: with the served Expiration a given time ahead, does a client ask the sidecar once
// for 20 calls (it holds the credentials) or on every call (they are inside its refresh
// window)? aws-sdk-go-v2 and the JavaScript SDK refresh 5 minutes ahead, botocore 15: so the
// Horizon of 20 minutes is outside every window, and a rotation reaches each SDK at the latest
// at the served Expiration minus its window.
func TestSDKRefreshWindows(t *testing.T) {
	t.Parallel()
	sdks := clients(t)
	emu := ststest.New(ststest.Options{Principals: []ststest.Principal{operator}}).Start()
	defer emu.Close()
	ctx := context.Background()
	const calls = 20
	cases := []struct {
		// served is how far ahead the sidecar's Expiration is (real expiry − Margin).
		served time.Duration
		// every lists the roles whose SDK asks on every call; the others ask once.
		every []string
	}{
		{credserver.Horizon, nil},
		{14 * time.Minute, []string{"botocore"}},
		{4 * time.Minute, []string{"go", "botocore", "js"}},
	}
	for _, c := range cases {
		t.Run("served "+c.served.String()+" ahead", func(t *testing.T) {
			var wg sync.WaitGroup
			for _, s := range sdks {
				dir := t.TempDir()
				is := newIssuer(t, emu, s.role, filepath.Join(dir, "secret"))
				// The real session lasts an hour; the Secret says it expires sooner, which
				// is what the sidecar's Expiration is computed from.
				is.expiration = min(c.served+credserver.Margin, time.Hour)
				if c.served == credserver.Horizon {
					is.expiration = time.Hour
				}
				if _, err := is.issue(ctx, 3600); err != nil {
					t.Fatal(err)
				}
				token := "token-for-" + s.role + "-0123456789abcdefghijklmnopq"
				tokenFile := filepath.Join(dir, "token")
				if err := os.WriteFile(tokenFile, []byte(token), 0o444); err != nil {
					t.Fatal(err)
				}
				srv, fetches := countingServer(t, is.dir, token)
				wg.Go(func() {
					cmd := s.command(time.Minute, 100*time.Millisecond, calls)
					cmd.Env = append(cmd.Env, clientEnv(t, emu.URL, srv.URL+credserver.CredentialsPath, tokenFile)...)
					out, err := cmd.Output()
					ok, errs := outcome(out)
					n := fetches.Load()
					t.Logf("%s: %d calls, %d requests to the sidecar", s.name, ok, n)
					switch {
					case err != nil || len(errs) > 0 || ok != calls:
						t.Errorf("%s: exit %v, %d ok, errors %v", s.name, err, ok, first(errs, 3))
					case contains(c.every, s.role) && n < int64(ok):
						t.Errorf("%s: %d requests for %d calls, want one per call: the Expiration is inside its window", s.name, n, ok)
					case !contains(c.every, s.role) && n != 1:
						t.Errorf("%s: %d requests for %d calls, want exactly one: the Expiration is outside its window", s.name, n, ok)
					}
				})
			}
			wg.Wait()
		})
	}
}
