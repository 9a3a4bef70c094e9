package metricsauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// apiServer plays the API server's reviews: tokens maps a token to its user; allowed lists the
// "user verb path" the authorizer allows.
type apiServer struct {
	tokens   map[string]authnv1.UserInfo
	allowed  map[string]bool
	fail     bool
	reviews  map[string]int // by kind
	lastUser authzv1.SubjectAccessReviewSpec
}

func (a *apiServer) guard(now *time.Time) *Guard {
	cs := fake.NewClientset()
	a.reviews = map[string]int{}
	cs.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		a.reviews["token"]++
		if a.fail {
			return true, nil, errors.New("the API server is unavailable")
		}
		tr := action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		if u, ok := a.tokens[tr.Spec.Token]; ok {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: u}
		}
		return true, tr, nil
	})
	cs.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		a.reviews["access"]++
		sar := action.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview)
		a.lastUser = sar.Spec
		attrs := sar.Spec.NonResourceAttributes
		sar.Status.Allowed = attrs != nil && a.allowed[sar.Spec.User+" "+attrs.Verb+" "+attrs.Path]
		return true, sar, nil
	})
	g := New(cs.AuthenticationV1().TokenReviews(), cs.AuthorizationV1().SubjectAccessReviews())
	g.now = func() time.Time { return *now }
	return g
}

func scrape(h http.Handler, token string) (int, string) {
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestOnlyAuthorizedClientsAreServed(t *testing.T) {
	prometheus := authnv1.UserInfo{Username: "system:serviceaccount:monitoring:prometheus", UID: "u-1", Groups: []string{"system:serviceaccounts"},
		Extra: map[string]authnv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"prometheus-0"}}}
	nobody := authnv1.UserInfo{Username: "system:serviceaccount:monitoring:nobody"}
	api := &apiServer{
		tokens:  map[string]authnv1.UserInfo{"prom-token": prometheus, "nobody-token": nobody},
		allowed: map[string]bool{prometheus.Username + " get /metrics": true},
	}
	now := time.Unix(1_800_000_000, 0)
	served := 0
	h := api.guard(&now).Wrap(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served++; _, _ = w.Write([]byte("metrics")) }))

	cases := []struct {
		name, token string
		code        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a token the API server does not accept", "stolen", http.StatusUnauthorized},
		{"a token longer than any real one", strings.Repeat("x", MaxTokenBytes+1), http.StatusUnauthorized},
		{"a user without the right", "nobody-token", http.StatusForbidden},
		{"the scraper", "prom-token", http.StatusOK},
	}
	for _, c := range cases {
		code, body := scrape(h, c.token)
		if code != c.code {
			t.Errorf("%s: %d %q, want %d", c.name, code, body, c.code)
		}
		if c.token != "" && strings.Contains(body, c.token) {
			t.Errorf("%s: the answer carries the token", c.name)
		}
	}
	if served != 1 {
		t.Errorf("the metrics were served %d times, want once", served)
	}
	if api.reviews["token"] != 3 {
		t.Errorf("%d TokenReviews, want 3: none without a token or with an oversized one", api.reviews["token"])
	}
	if s := api.lastUser; s.User != prometheus.Username || s.UID != "u-1" || len(s.Groups) != 1 || s.Extra["authentication.kubernetes.io/pod-name"][0] != "prometheus-0" {
		t.Errorf("the access review was for %+v, not the authenticated user", s)
	}
}

func TestAnswersAreRememberedForAWhile(t *testing.T) {
	prometheus := authnv1.UserInfo{Username: "prometheus"}
	api := &apiServer{tokens: map[string]authnv1.UserInfo{"prom-token": prometheus}, allowed: map[string]bool{"prometheus get /metrics": true}}
	now := time.Unix(1_800_000_000, 0)
	g := api.guard(&now)
	h := g.Wrap(logr.Discard(), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))

	for range 10 {
		if code, _ := scrape(h, "prom-token"); code != http.StatusOK {
			t.Fatalf("scrape: %d", code)
		}
	}
	if api.reviews["token"] != 1 || api.reviews["access"] != 1 {
		t.Fatalf("ten scrapes cost %v reviews, want one of each", api.reviews)
	}
	for k := range g.users.entries {
		if strings.Contains(string(k[:]), "prom-token") {
			t.Error("the cache holds the token itself")
		}
	}
	now = now.Add(AuthenticatedTTL + time.Second)
	scrape(h, "prom-token")
	if api.reviews["token"] != 2 || api.reviews["access"] != 1 {
		t.Errorf("after %v: %v reviews, want the token reviewed again and the decision kept", AuthenticatedTTL, api.reviews)
	}

	// A revoked right is noticed once the allowed decision has expired.
	delete(api.allowed, "prometheus get /metrics")
	now = now.Add(AllowedTTL)
	if code, _ := scrape(h, "prom-token"); code != http.StatusForbidden {
		t.Errorf("after the right was revoked and %v passed: %d, want 403", AllowedTTL, code)
	}
}

func TestAPIServerFailureIsNotAnAnswer(t *testing.T) {
	api := &apiServer{tokens: map[string]authnv1.UserInfo{"prom-token": {Username: "prometheus"}}, allowed: map[string]bool{"prometheus get /metrics": true}, fail: true}
	now := time.Unix(1_800_000_000, 0)
	h := api.guard(&now).Wrap(logr.Discard(), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	if code, _ := scrape(h, "prom-token"); code != http.StatusInternalServerError {
		t.Errorf("with the API server failing: %d, want 500", code)
	}
	api.fail = false
	if code, _ := scrape(h, "prom-token"); code != http.StatusOK {
		t.Errorf("once it answers: %d, want 200 (a failure is not remembered)", code)
	}
}
