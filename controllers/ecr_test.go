package controllers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/docker/cli/cli/config/configfile"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

var registries = []string{"111122223333.dkr.ecr.eu-west-1.amazonaws.com", "444455556666.dkr.ecr.eu-west-1.amazonaws.com"}

func imagePull(ar *rkv1.AssumedRole) {
	ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](43200)
	ar.Spec.Secret.Type = corev1.SecretTypeDockerConfigJson
	ar.Spec.Secret.ECR = &rkv1.ECRSpec{RegistryIDs: []string{"444455556666", "111122223333"}, Region: "eu-west-1"}
}

// dockerLogins reads an image-pull Secret the way docker does (its own config file parser, which
// decodes the auth field into username and password) and returns password by registry.
func dockerLogins(t *testing.T, s *corev1.Secret) map[string]string {
	t.Helper()
	cf := configfile.New("config.json")
	if err := cf.LoadFromReader(strings.NewReader(string(s.Data[corev1.DockerConfigJsonKey]))); err != nil {
		t.Fatalf("docker cannot parse .dockerconfigjson: %v", err)
	}
	out := map[string]string{}
	for server, ac := range cf.AuthConfigs {
		if ac.Username != "AWS" || ac.Password == "" {
			t.Fatalf("registry %s: docker decoded user %q from the auth field", server, ac.Username)
		}
		out[server] = ac.Password
	}
	return out
}

// registryGET logs in to an emulated registry as docker login does: GET /v2/ with basic auth.
func registryGET(srv *ststest.Server, host, user, password string) int {
	req := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	req.Host = host
	req.SetBasicAuth(user, password)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec.Code
}

// An image-pull Secret for two ECR registries: docker parses it, the registries accept the login,
// and it is renewed ahead of the token's expiry, which here comes before the session's.
func TestECRPullSecret(t *testing.T) {
	// 43200 s sessions last 10 s; ECR tokens (6 h here) last 5 s and so expire first.
	h := newHarness(t, ststest.Options{TimeScale: 4320, ECRTokenLifetime: 6 * time.Hour})
	h.start()
	h.assumedRole("pull", imagePull)
	ar := h.waitCondition("pull", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 20*time.Second)

	s := h.secret("pull")
	if s.Type != corev1.SecretTypeDockerConfigJson || len(s.Data) != 1 {
		t.Fatalf("Secret type %s with keys %v; want kubernetes.io/dockerconfigjson holding only .dockerconfigjson", s.Type, keys(s.Data))
	}
	var raw struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &raw); err != nil {
		t.Fatal(err)
	}
	logins := dockerLogins(t, s)
	for _, host := range registries {
		decoded, err := base64.StdEncoding.DecodeString(raw.Auths[host].Auth)
		if err != nil || string(decoded) != "AWS:"+logins[host] {
			t.Errorf("registry %s: auth field does not decode to AWS:<password>", host)
		}
		if code := registryGET(h.sts, host, "AWS", logins[host]); code != http.StatusOK {
			t.Errorf("registry %s refuses the login: HTTP %d", host, code)
		}
	}
	if len(logins) != 2 {
		t.Errorf("logins for %v; want %v", keys(logins), registries)
	}
	if strings.Contains(string(s.Data[corev1.DockerConfigJsonKey]), "ASIA") {
		t.Error("the image-pull Secret carries an AWS access key")
	}

	// The expiry in the Secret and status is the token's, not the session's.
	issued, _ := time.Parse(time.RFC3339, s.Annotations[rkv1.AnnotationIssuedAt])
	exp, _ := time.Parse(time.RFC3339, s.Annotations[rkv1.AnnotationExpiration])
	if life := exp.Sub(issued); life < 4*time.Second || life > 6*time.Second {
		t.Errorf("Secret expires %v after issue; want the token's 5 s, not the session's 10 s", life)
	}
	if !ar.Status.Expiration.Time.Equal(exp) {
		t.Errorf("status.expiration %v, Secret annotation %v", ar.Status.Expiration, exp)
	}

	// Sample for 12 s (over two token lifetimes): every login in the Secret works every time.
	seen := map[string]bool{}
	var refused []string
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		cur := &corev1.Secret{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(s), cur); err != nil {
			t.Fatal(err)
		}
		for host, pw := range dockerLogins(t, cur) {
			seen[pw] = true
			if err := h.sts.RegistryLogin(host, "AWS", pw); err != nil {
				refused = append(refused, host+": "+err.Error())
			}
		}
	}
	if len(refused) > 0 {
		t.Errorf("%d samples held a login the registry refused, first: %s", len(refused), refused[0])
	}
	if len(seen) < 3 {
		t.Errorf("saw %d distinct tokens in 12 s; want at least 3 (renewal every ~3 s)", len(seen))
	}
	// No token reaches a log, an event or the status.
	arNow := h.get("pull")
	visible := h.logs.String() + strings.Join(h.events(), "\n") + fmt.Sprintf("%+v", arNow.Status)
	for pw := range seen {
		if strings.Contains(visible, pw) || strings.Contains(visible, base64.StdEncoding.EncodeToString([]byte("AWS:"+pw))) {
			t.Fatal("an ECR token appears in the manager log, an event or the status")
		}
	}
	// Each issuance is one AssumeRole and one GetAuthorizationToken for both registries.
	if ar, ecr := h.sts.CallCount("AssumeRole"), h.sts.CallCount("GetAuthorizationToken"); ar != ecr {
		t.Errorf("%d AssumeRole calls, %d GetAuthorizationToken calls; want one each per issuance", ar, ecr)
	}
	for _, c := range h.sts.Calls() {
		if c.Action == "GetAuthorizationToken" && (strings.Join(c.RegistryIDs, ",") != "111122223333,444455556666" || c.Region != "eu-west-1" || !strings.Contains(c.Caller, ":assumed-role/pull/") || c.Code != "") {
			t.Errorf("ECR call %+v; want the assumed session, eu-west-1, both registry IDs, success", c)
		}
	}
}

// A role without ecr:GetAuthorizationToken: a clear terminal failure and no Secret; once allowed,
// a rotation request issues it. Switching the kind of Secret replaces it; and an image-pull
// AssumedRole cannot be a chain's source.
func TestECRPullSecretFailuresAndTypeChange(t *testing.T) {
	h := newHarness(t, ststest.Options{})
	h.sts.SetECRDenied("arn:aws:iam::111122223333:role/pull", true)
	h.start()
	h.assumedRole("pull", imagePull)
	var pull *corev1.Secret
	h.phase("a refused ECR login writes nothing and says why", func(t *testing.T) {
		ar := h.waitCondition("pull", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonIssueFailed, 20*time.Second)
		if f := ar.Status.LastFailure; f == nil || f.Code != "AccessDeniedException" || f.Retryable || !strings.Contains(f.Message, "ecr:GetAuthorizationToken") {
			t.Errorf("lastFailure %+v; want terminal AccessDeniedException naming ecr:GetAuthorizationToken", f)
		}
		if h.secret("pull") != nil {
			t.Error("a Secret was written although ECR refused the login")
		}
		h.eventually(10*time.Second, "IssueFailed event naming GetAuthorizationToken", func() bool {
			for _, e := range h.events() {
				if strings.HasPrefix(e, "IssueFailed: GetAuthorizationToken failed with AccessDeniedException") {
					return true
				}
			}
			return false
		})
	})
	h.phase("once allowed, a rotation writes the image-pull Secret", func(t *testing.T) {
		h.sts.SetECRDenied("arn:aws:iam::111122223333:role/pull", false)
		h.annotate("pull", rkv1.AnnotationRotate, "1")
		h.waitCondition("pull", rkv1.ConditionReady, metav1.ConditionTrue, "", 20*time.Second)
		pull = h.secret("pull")
		if pull == nil || pull.Type != corev1.SecretTypeDockerConfigJson {
			t.Fatalf("Secret %v after the role was allowed", pull)
		}
	})
	h.phase("a chain cannot start from an image-pull Secret", func(t *testing.T) {
		h.assumedRole("chained", func(ar *rkv1.AssumedRole) {
			ar.Spec.Source = &rkv1.CredentialSource{AssumedRoleRef: rkv1.LocalAssumedRoleReference{Name: "pull"}}
		})
		c := h.waitCondition("chained", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonInvalidSpec, 20*time.Second)
		if m := condition(c, rkv1.ConditionReady).Message; !strings.Contains(m, "image-pull Secret") {
			t.Errorf("chained message %q", m)
		}
	})
	h.phase("back to the default type, the Secret is replaced", func(t *testing.T) {
		// Kubernetes cannot change a Secret's type.
		h.change("pull", func(cur *rkv1.AssumedRole) { cur.Spec.Secret = rkv1.SecretSpec{} })
		h.waitCondition("pull", rkv1.ConditionReady, metav1.ConditionTrue, "", 20*time.Second)
		opaque := h.secret("pull")
		if opaque.Type != corev1.SecretTypeOpaque || opaque.UID == pull.UID || len(opaque.Data[corev1.DockerConfigJsonKey]) != 0 || len(opaque.Data["AWS_SESSION_TOKEN"]) == 0 {
			t.Errorf("after switching back: type %s, same object %v, keys %v", opaque.Type, opaque.UID == pull.UID, keys(opaque.Data))
		}
	})
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
