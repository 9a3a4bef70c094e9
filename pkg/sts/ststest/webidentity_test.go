package ststest_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/minio"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// The test API server is the OpenID Connect issuer: its service-account tokens (TokenRequest) are
// verified by the emulator against the keys it publishes at /openid/v1/jwks.
var (
	issuerOnce sync.Once
	issuerEnv  *envtest.Environment
	issuerCfg  *rest.Config
	issuerErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if issuerEnv != nil {
		_ = issuerEnv.Stop()
	}
	os.Exit(code)
}

// Issuer is the test API server as an OpenID Connect issuer, with the operator's ServiceAccount.
type Issuer struct {
	URL   string
	CAPEM []byte
	kube  kubernetes.Interface
}

const (
	operatorNamespace = "rolekeeper-system"
	operatorSA        = "rolekeeper"
	operatorSubject   = "system:serviceaccount:rolekeeper-system:rolekeeper"
)

// issuer starts the test API server once per test binary. It publishes its discovery document
// and keys anonymously, as a cluster does when IAM must read them (the documented binding of
// system:service-account-issuer-discovery to system:unauthenticated).
func issuer(t *testing.T) *Issuer {
	t.Helper()
	issuerOnce.Do(func() {
		if issuerEnv, issuerErr = testenv.NewIssuer(); issuerErr != nil {
			return
		}
		if issuerCfg, issuerErr = issuerEnv.Start(); issuerErr != nil {
			return
		}
		kube := kubernetes.NewForConfigOrDie(issuerCfg)
		ctx := context.Background()
		_, issuerErr = kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "service-account-issuer-discovery-unauthenticated"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:unauthenticated"}},
		}, metav1.CreateOptions{})
		if issuerErr != nil {
			return
		}
		if _, issuerErr = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}, metav1.CreateOptions{}); issuerErr != nil {
			return
		}
		_, issuerErr = kube.CoreV1().ServiceAccounts(operatorNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: operatorSA}}, metav1.CreateOptions{})
	})
	if issuerErr != nil {
		t.Fatalf("starting the test API server as an issuer: %v", issuerErr)
	}
	return &Issuer{URL: issuerEnv.ControlPlane.APIServer.SecureServing.URL("https", "/").String(), CAPEM: issuerCfg.CAData, kube: kubernetes.NewForConfigOrDie(issuerCfg)}
}

// Token asks the API server for a token of the operator's ServiceAccount (TokenRequest).
func (i *Issuer) Token(t *testing.T, audience string, lifetime time.Duration) string {
	t.Helper()
	secs := int64(lifetime / time.Second)
	tr, err := i.kube.CoreV1().ServiceAccounts(operatorNamespace).CreateToken(context.Background(), operatorSA, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	return tr.Status.Token
}

func webIdentityEmulator(t *testing.T, iss *Issuer, opts ststest.Options) *ststest.Server {
	t.Helper()
	srv := ststest.New(opts).Start()
	t.Cleanup(srv.Close)
	if err := srv.AddOIDCProvider(ststest.OIDCProvider{URL: iss.URL, ClientIDs: []string{"sts.amazonaws.com"}, CAPEM: iss.CAPEM}); err != nil {
		t.Fatal(err)
	}
	return srv
}

// exchange calls AssumeRoleWithWebIdentity through the SDK (unsigned, as the SDK sends it).
func exchange(t *testing.T, srv *ststest.Server, role, token string) (*awssts.AssumeRoleWithWebIdentityOutput, error) {
	t.Helper()
	return exchangeAt(srv.URL, role, token)
}

const operatorRole = "arn:aws:iam::111122223333:role/rolekeeper"

var operatorTrust = ststest.RoleRule{WebIdentity: &ststest.WebIdentityTrust{Audience: "sts.amazonaws.com", Subjects: []string{operatorSubject}}}

func trustIssuer(iss *Issuer, rule ststest.RoleRule) ststest.RoleRule {
	if rule.WebIdentity != nil {
		w := *rule.WebIdentity
		w.Issuer = iss.URL
		rule.WebIdentity = &w
	}
	return rule
}

func TestAssumeRoleWithWebIdentityVerifiesServiceAccountTokens(t *testing.T) {
	iss := issuer(t)
	srv := webIdentityEmulator(t, iss, ststest.Options{StrictRoles: true})
	srv.SetRole(operatorRole, trustIssuer(iss, operatorTrust))

	out, err := exchange(t, srv, operatorRole, iss.Token(t, "sts.amazonaws.com", 10*time.Minute))
	if err != nil {
		t.Fatalf("a valid token was refused: %v", err)
	}
	if got, want := aws.ToString(out.AssumedRoleUser.Arn), "arn:aws:sts::111122223333:assumed-role/rolekeeper/rolekeeper"; got != want {
		t.Errorf("session ARN %q, want %q", got, want)
	}
	if got := aws.ToString(out.SubjectFromWebIdentityToken); got != operatorSubject {
		t.Errorf("SubjectFromWebIdentityToken %q, want %q", got, operatorSubject)
	}
	if got := aws.ToString(out.Audience); got != "sts.amazonaws.com" {
		t.Errorf("Audience %q", got)
	}
	// The session's credentials authenticate for real, and make every AssumeRole role chaining.
	creds := out.Credentials
	signed := awssts.New(awssts.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: *creds.AccessKeyId, SecretAccessKey: *creds.SecretAccessKey, SessionToken: *creds.SessionToken}, nil
		})})
	id, err := signed.GetCallerIdentity(context.Background(), &awssts.GetCallerIdentityInput{})
	if err != nil || aws.ToString(id.Arn) != aws.ToString(out.AssumedRoleUser.Arn) {
		t.Fatalf("GetCallerIdentity with the session: %v, %v", id, err)
	}
	srv.SetRole("arn:aws:iam::111122223333:role/reader", ststest.RoleRule{})
	_, err = signed.AssumeRole(context.Background(), &awssts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::111122223333:role/reader"), RoleSessionName: aws.String("s1"), DurationSeconds: aws.Int32(7200)})
	if code := apiCode(err); code != "ValidationError" || !strings.Contains(err.Error(), "role chaining") {
		t.Fatalf("a 2-hour AssumeRole signed by the web identity session: %v, want the role chaining limit", err)
	}
	calls := srv.Calls()
	if c := calls[0]; c.Action != "AssumeRoleWithWebIdentity" || c.Subject != operatorSubject || c.TokenID == "" || c.Code != "" {
		t.Errorf("recorded call %+v", c)
	}
}

func TestAssumeRoleWithWebIdentityRefusals(t *testing.T) {
	iss := issuer(t)
	valid := iss.Token(t, "sts.amazonaws.com", 10*time.Minute)
	otherAudience := iss.Token(t, "vault", 10*time.Minute)
	parts := strings.Split(valid, ".")
	sig := []byte(parts[2])
	sig[10] ^= 'A' ^ 'B'
	tampered := parts[0] + "." + parts[1] + "." + string(sig)
	forged := forge(t, iss.URL, operatorSubject)

	for _, c := range []struct {
		name     string
		token    string
		rule     ststest.RoleRule
		advance  time.Duration
		noIssuer bool
		code     string
		message  string
	}{
		{name: "tampered signature", token: tampered, rule: operatorTrust, code: "InvalidIdentityToken", message: "could not be validated"},
		{name: "signed by another key", token: forged, rule: operatorTrust, code: "InvalidIdentityToken", message: "could not be validated"},
		{name: "not a JWT", token: "not-a-token", rule: operatorTrust, code: "InvalidIdentityToken", message: "could not be validated"},
		{name: "audience no provider accepts", token: otherAudience, rule: operatorTrust, code: "InvalidIdentityToken", message: "Incorrect token audience"},
		{name: "issuer not registered", token: valid, rule: operatorTrust, noIssuer: true, code: "InvalidIdentityToken", message: "No OpenIDConnect provider found in your account for " + iss.URL},
		{name: "expired", token: valid, rule: operatorTrust, advance: 11 * time.Minute, code: "ExpiredTokenException", message: "Token expired: current date/time"},
		{name: "subject the role does not trust", token: valid, rule: ststest.RoleRule{WebIdentity: &ststest.WebIdentityTrust{Subjects: []string{"system:serviceaccount:other:*"}}}, code: "AccessDenied", message: "Not authorized to perform sts:AssumeRoleWithWebIdentity"},
		{name: "audience the role does not trust", token: valid, rule: ststest.RoleRule{WebIdentity: &ststest.WebIdentityTrust{Audience: "vault"}}, code: "AccessDenied", message: "Not authorized to perform sts:AssumeRoleWithWebIdentity"},
		{name: "role denies", token: valid, rule: ststest.RoleRule{Deny: true}, code: "AccessDenied", message: "Not authorized"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := clocktesting.NewFakeClock(time.Now())
			var srv *ststest.Server
			if c.noIssuer {
				srv = ststest.New(ststest.Options{Clock: clock}).Start()
				t.Cleanup(srv.Close)
			} else {
				srv = webIdentityEmulator(t, iss, ststest.Options{Clock: clock})
			}
			srv.SetRole(operatorRole, trustIssuer(iss, c.rule))
			clock.Step(c.advance)
			_, err := exchange(t, srv, operatorRole, c.token)
			if apiCode(err) != c.code || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("got %v, want %s containing %q", err, c.code, c.message)
			}
			if calls := srv.Calls(); len(calls) != 1 || calls[0].IssuedAccessKey != "" {
				t.Fatalf("calls %+v, want one refused call", calls)
			}
		})
	}
}

// A token's lifetime is divided by the emulator's TimeScale, like every lifetime it grants, so
// the e2e tests see tokens expire and be replaced in seconds.
func TestAssumeRoleWithWebIdentityTimeScaledExpiry(t *testing.T) {
	iss := issuer(t)
	clock := clocktesting.NewFakeClock(time.Now())
	srv := webIdentityEmulator(t, iss, ststest.Options{Clock: clock, TimeScale: 60})
	srv.SetRole(operatorRole, trustIssuer(iss, operatorTrust))
	token := iss.Token(t, "sts.amazonaws.com", 10*time.Minute) // 10 s of the emulator's clock
	clock.Step(5 * time.Second)
	if _, err := exchange(t, srv, operatorRole, token); err != nil {
		t.Fatalf("within its scaled lifetime: %v", err)
	}
	clock.Step(6 * time.Second)
	if _, err := exchange(t, srv, operatorRole, token); apiCode(err) != "ExpiredTokenException" {
		t.Fatalf("after its scaled lifetime: %v, want ExpiredTokenException", err)
	}
}

// forge signs a token with a key the issuer never published, naming the issuer.
func forge(t *testing.T, issuerURL, subject string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "forged"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	token, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: issuerURL, Subject: subject, Audience: jwt.Audience{"sts.amazonaws.com"},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return fmt.Sprint(err)
}

// MinIO, an independent implementation of AssumeRoleWithWebIdentity, verifies the same
// TokenRequest tokens against the same published keys: it accepts what the emulator accepts
// and refuses a tampered token and a token for another audience. (It checks no trust policy:
// its role policy grants every token of the provider, so subject refusals are the emulator's
// alone; expiry is not tried here, as MinIO has no clock to move and the shortest token lasts
// ten minutes.)
func TestMinIOVerifiesServiceAccountTokensToo(t *testing.T) {
	iss := issuer(t)
	caFile := filepath.Join(t.TempDir(), "issuer-ca.pem")
	if err := os.WriteFile(caFile, iss.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	m := minio.Start(t,
		"MINIO_IDENTITY_OPENID_CONFIG_URL="+strings.TrimSuffix(iss.URL, "/")+"/.well-known/openid-configuration",
		"MINIO_IDENTITY_OPENID_CLIENT_ID=sts.amazonaws.com",
		"MINIO_IDENTITY_OPENID_ROLE_POLICY=readwrite",
		"SSL_CERT_FILE="+caFile) // MinIO trusts the issuer's TLS through the system roots
	// MinIO names the role of a provider after a hash of its client ID.
	sum := sha1.Sum([]byte("sts.amazonaws.com"))
	minioRole := "arn:minio:iam:::role/" + base64.RawURLEncoding.EncodeToString(sum[:])
	emulator := webIdentityEmulator(t, iss, ststest.Options{})
	emulator.SetRole(operatorRole, trustIssuer(iss, operatorTrust))

	valid := iss.Token(t, "sts.amazonaws.com", 10*time.Minute)
	parts := strings.Split(valid, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Split(forge(t, iss.URL, operatorSubject), ".")[2]
	for _, c := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"valid token", valid, true},
		{"another key's signature", forged, false},
		{"another audience", iss.Token(t, "vault", 10*time.Minute), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			minioOut, minioErr := exchangeAt(m.URL, minioRole, c.token)
			_, emuErr := exchange(t, emulator, operatorRole, c.token)
			if (minioErr == nil) != c.ok || (emuErr == nil) != c.ok {
				t.Fatalf("MinIO: %v; emulator: %v; want accepted=%v from both", minioErr, emuErr, c.ok)
			}
			if !c.ok {
				return
			}
			creds := minioOut.Credentials
			status, body, err := m.S3(context.Background(), aws.Credentials{AccessKeyID: *creds.AccessKeyId, SecretAccessKey: *creds.SecretAccessKey, SessionToken: *creds.SessionToken}, http.MethodGet, "/", nil)
			if err != nil || status != http.StatusOK {
				t.Fatalf("S3 ListBuckets with MinIO's web identity session: %d %s %v", status, body, err)
			}
		})
	}
}

func exchangeAt(endpoint, role, token string) (*awssts.AssumeRoleWithWebIdentityOutput, error) {
	client := awssts.New(awssts.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), RetryMaxAttempts: 1})
	return client.AssumeRoleWithWebIdentity(context.Background(), &awssts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(role), RoleSessionName: aws.String("rolekeeper"), WebIdentityToken: aws.String(token),
	})
}
