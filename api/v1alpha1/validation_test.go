package v1alpha1_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/rolekeeper/rolekeeper/test/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) {
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test control plane:", err)
		os.Exit(1)
	}
	k8s, err = client.New(cfg, client.Options{})
	code := 1
	if err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, err)
	}
	_ = env.Stop()
	os.Exit(code)
}

const baseRole = `{
  "apiVersion": "rolekeeper.io/v1alpha1", "kind": "AssumedRole",
  "metadata": {"name": "app", "namespace": "default"},
  "spec": {"assumeRole": {"roleArn": "arn:aws:iam::111122223333:role/reader"}}
}`

const basePolicy = `{
  "apiVersion": "rolekeeper.io/v1alpha1", "kind": "AssumedRolePolicy",
  "metadata": {"name": "team-a"},
  "spec": {"namespaces": ["team-a"], "allowedRoleArns": ["arn:aws:iam::111122223333:role/team-a-*"]}
}`

// admissionCase is one object, given as a JSON merge patch over a valid base object.
type admissionCase struct {
	name  string
	base  string
	patch string
	// want is a substring of the API server's refusal; empty means the object must be accepted.
	want string
}

const baseClusterRole = `{
  "apiVersion": "rolekeeper.io/v1alpha1", "kind": "ClusterAssumedRole",
  "metadata": {"name": "shared"},
  "spec": {"namespaceSelector": {"matchLabels": {"team": "a"}},
           "template": {"spec": {"assumeRole": {"roleArn": "arn:aws:iam::111122223333:role/reader"}}}}
}`

func clusterCase(name, patch, want string) admissionCase {
	return admissionCase{name: name, base: baseClusterRole, patch: patch, want: want}
}

func roleCase(name, patch, want string) admissionCase {
	return admissionCase{name: name, base: baseRole, patch: patch, want: want}
}

func policyCase(name, patch, want string) admissionCase {
	return admissionCase{name: name, base: basePolicy, patch: patch, want: want}
}

func strs(n int, f func(i int) string) string {
	out := make([]string, n)
	for i := range out {
		out[i] = f(i)
	}
	b, _ := json.Marshal(out)
	return string(b)
}

func tags(n int) string {
	out := make([]map[string]string, n)
	for i := range out {
		out[i] = map[string]string{"key": fmt.Sprintf("k%d", i), "value": "v"}
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// iamPathChars are the characters IAM allows in a path (U+0021-U+007E), slashes kept apart so the
// path has segments.
var iamPathChars = func() string {
	var b strings.Builder
	for c := '!'; c <= '~'; c++ {
		if c != '/' && c != '"' && c != '\\' {
			b.WriteRune(c)
		}
	}
	return b.String() + `/a\"b\\c`
}()

var invalidCases = []admissionCase{
	// Shape of the request.
	roleCase("neither assumeRole nor assumeRoot", `{"spec":{"assumeRole":null}}`, "set exactly one of spec.assumeRole"),
	roleCase("both assumeRole and assumeRoot", `{"spec":{"assumeRoot":{"targetPrincipal":"444455556666","taskPolicy":"S3UnlockBucketPolicy"}}}`, "set exactly one of spec.assumeRole"),

	// AssumeRole parameters deliberately not offered: refused with the reason, not pruned.
	roleCase("MFA serial number", `{"spec":{"assumeRole":{"serialNumber":"arn:aws:iam::111122223333:mfa/ops"}}}`, "spec.assumeRole.serialNumber: Forbidden: serialNumber and tokenCode (MFA) are deliberately not offered: an MFA code cannot be produced unattended"),
	roleCase("MFA token code", `{"spec":{"assumeRole":{"tokenCode":"123456"}}}`, "without storing the MFA secret next to the credentials it protects"),
	roleCase("MFA serial number and token code", `{"spec":{"assumeRole":{"serialNumber":"GAHT12345678","tokenCode":"123456"}}}`, "serialNumber and tokenCode (MFA) are deliberately not offered"),
	roleCase("provided contexts", `{"spec":{"assumeRole":{"providedContexts":[{"providerArn":"arn:aws:iam::aws:contextProvider/IdentityCenter","contextAssertion":"abc"}]}}}`, "spec.assumeRole.providedContexts: Forbidden: providedContexts is deliberately not offered: a context assertion comes from a person's IAM Identity Center session"),
	roleCase("empty provided contexts", `{"spec":{"assumeRole":{"providedContexts":[]}}}`, "providedContexts is deliberately not offered"),
	clusterCase("cluster role with an MFA token code", `{"spec":{"template":{"spec":{"assumeRole":{"tokenCode":"123456"}}}}}`, "serialNumber and tokenCode (MFA) are deliberately not offered"),

	// roleArn.
	roleCase("roleArn missing", `{"spec":{"assumeRole":{"roleArn":null,"sessionName":"ok-name"}}}`, "spec.assumeRole.roleArn: Required value"),
	roleCase("roleArn names a user", `{"spec":{"assumeRole":{"roleArn":"arn:aws:iam::111122223333:user/bob"}}}`, "roleArn must be an IAM role ARN"),
	roleCase("roleArn with short account", `{"spec":{"assumeRole":{"roleArn":"arn:aws:iam::1111:role/reader"}}}`, "roleArn must be an IAM role ARN"),
	roleCase("roleArn with spaces", `{"spec":{"assumeRole":{"roleArn":"arn:aws:iam::111122223333:role/my role"}}}`, "roleArn must be an IAM role ARN"),
	roleCase("role path with a space", `{"spec":{"assumeRole":{"roleArn":"arn:aws:iam::111122223333:role/my path/reader"}}}`, "roleArn must be an IAM role ARN"),
	roleCase("role name with a slash-free path character", `{"spec":{"assumeRole":{"roleArn":"arn:aws:iam::111122223333:role/path/read!er"}}}`, "roleArn must be an IAM role ARN"),
	roleCase("roleArn too long", `{"spec":{"assumeRole":{"roleArn":"arn:aws:iam::111122223333:role/`+strings.Repeat("r", 2030)+`"}}}`, "spec.assumeRole.roleArn: Too long"),

	// sessionName.
	roleCase("sessionName too short", `{"spec":{"assumeRole":{"sessionName":"a"}}}`, "spec.assumeRole.sessionName"),
	roleCase("sessionName too long", `{"spec":{"assumeRole":{"sessionName":"`+strings.Repeat("s", 65)+`"}}}`, "spec.assumeRole.sessionName: Too long"),
	roleCase("sessionName with a space", `{"spec":{"assumeRole":{"sessionName":"my session"}}}`, "sessionName may contain only letters, digits and _+=,.@-"),

	// durationSeconds.
	roleCase("duration below 900", `{"spec":{"assumeRole":{"durationSeconds":899}}}`, "spec.assumeRole.durationSeconds: Invalid value: 899"),
	roleCase("duration above 43200", `{"spec":{"assumeRole":{"durationSeconds":43201}}}`, "spec.assumeRole.durationSeconds: Invalid value: 43201"),
	roleCase("chained duration above one hour", `{"spec":{"assumeRole":{"durationSeconds":7200},"source":{"assumedRoleRef":{"name":"base"}}}}`, "must be at most 3600 when spec.source.assumedRoleRef is set"),
	roleCase("chained from itself", `{"spec":{"source":{"assumedRoleRef":{"name":"app"}}}}`, "an AssumedRole cannot chain from itself"),
	roleCase("chained from an invalid name", `{"spec":{"source":{"assumedRoleRef":{"name":"Base_Role"}}}}`, "assumedRoleRef.name must be a valid object name"),

	// externalId and sourceIdentity.
	roleCase("externalId too short", `{"spec":{"assumeRole":{"externalId":"x"}}}`, "spec.assumeRole.externalId"),
	roleCase("externalId with a space", `{"spec":{"assumeRole":{"externalId":"my id"}}}`, "externalId may contain only letters, digits and _+=,.@:/-"),
	roleCase("externalId too long", `{"spec":{"assumeRole":{"externalId":"`+strings.Repeat("e", 1225)+`"}}}`, "spec.assumeRole.externalId: Too long"),
	roleCase("sourceIdentity with aws: prefix", `{"spec":{"assumeRole":{"sourceIdentity":"aws:me"}}}`, "sourceIdentity must not start with aws:"),
	roleCase("sourceIdentity with AWS: prefix", `{"spec":{"assumeRole":{"sourceIdentity":"AWS:me"}}}`, "sourceIdentity must not start with aws:"),
	roleCase("sourceIdentity with a bang", `{"spec":{"assumeRole":{"sourceIdentity":"me!"}}}`, "sourceIdentity may contain only letters, digits and _+=,.@-"),
	roleCase("sourceIdentity too long", `{"spec":{"assumeRole":{"sourceIdentity":"`+strings.Repeat("i", 65)+`"}}}`, "spec.assumeRole.sourceIdentity: Too long"),

	// Session policies.
	roleCase("policy not JSON", `{"spec":{"assumeRole":{"policy":"allow everything"}}}`, "policy must be an IAM policy JSON document"),
	roleCase("policy with a character STS refuses", `{"spec":{"assumeRole":{"policy":"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"\u20ac\",\"Effect\":\"Allow\",\"Action\":\"s3:*\",\"Resource\":\"*\"}]}"}}}`, "policy may contain only tab, line feed, carriage return and the characters U+0020 to U+00FF"),
	roleCase("policy with a vertical tab", `{"spec":{"assumeRole":{"policy":"{\u000b}"}}}`, "policy may contain only tab, line feed, carriage return"),
	roleCase("policy too long", `{"spec":{"assumeRole":{"policy":"{`+strings.Repeat(" ", 2047)+`}"}}}`, "spec.assumeRole.policy: Too long"),
	roleCase("eleven policyArns", `{"spec":{"assumeRole":{"policyArns":`+strs(11, func(i int) string { return fmt.Sprintf("arn:aws:iam::aws:policy/P%d", i) })+`}}}`, "spec.assumeRole.policyArns: Too many"),
	roleCase("policyArn names a role", `{"spec":{"assumeRole":{"policyArns":["arn:aws:iam::111122223333:role/reader"]}}}`, "each policyArns entry must be an IAM policy ARN"),
	roleCase("policyArns repeated", `{"spec":{"assumeRole":{"policyArns":["arn:aws:iam::aws:policy/ReadOnlyAccess","arn:aws:iam::aws:policy/ReadOnlyAccess"]}}}`, "Duplicate value"),
	roleCase("policy and policyArns over 2048", `{"spec":{"assumeRole":{"policy":"{`+strings.Repeat(" ", 1900)+`}","policyArns":`+strs(4, func(i int) string { return fmt.Sprintf("arn:aws:iam::aws:policy/%040d", i) })+`}}}`, "policy and policyArns together must be at most 2048 characters"),

	// Session tags.
	roleCase("fifty-one tags", `{"spec":{"assumeRole":{"tags":`+tags(51)+`}}}`, "spec.assumeRole.tags: Too many"),
	roleCase("forty-eight tags", `{"spec":{"assumeRole":{"tags":`+tags(48)+`}}}`, "at most 47 tags: AWS allows 50 per session and the operator adds up to three of its own"),
	roleCase("tag key with a bang", `{"spec":{"assumeRole":{"tags":[{"key":"team!","value":"a"}]}}}`, "tag key may contain only"),
	roleCase("tag key empty", `{"spec":{"assumeRole":{"tags":[{"key":"","value":"a"}]}}}`, "spec.assumeRole.tags[0].key"),
	roleCase("tag key too long", `{"spec":{"assumeRole":{"tags":[{"key":"`+strings.Repeat("k", 129)+`","value":"a"}]}}}`, "spec.assumeRole.tags[0].key: Too long"),
	roleCase("tag value too long", `{"spec":{"assumeRole":{"tags":[{"key":"team","value":"`+strings.Repeat("v", 257)+`"}]}}}`, "spec.assumeRole.tags[0].value: Too long"),
	roleCase("tag value with a hash", `{"spec":{"assumeRole":{"tags":[{"key":"team","value":"a#b"}]}}}`, "tag value may contain only"),
	roleCase("tag keys differing only in case", `{"spec":{"assumeRole":{"tags":[{"key":"Team","value":"a"},{"key":"team","value":"b"}]}}}`, "tag keys must be unique ignoring case"),
	roleCase("tag key repeated", `{"spec":{"assumeRole":{"tags":[{"key":"team","value":"a"},{"key":"team","value":"b"}]}}}`, "Duplicate value"),
	roleCase("tag key kubernetes-namespace reserved", `{"spec":{"assumeRole":{"tags":[{"key":"kubernetes-namespace","value":"other"}]}}}`, "tag keys starting with aws:, kubernetes- or rolekeeper.io/ are reserved"),
	roleCase("tag key Kubernetes-Name reserved", `{"spec":{"assumeRole":{"tags":[{"key":"Kubernetes-Name","value":"other"}]}}}`, "are reserved"),
	roleCase("tag key aws: reserved", `{"spec":{"assumeRole":{"tags":[{"key":"aws:PrincipalTag","value":"x"}]}}}`, "are reserved"),
	roleCase("tag key rolekeeper.io/ reserved", `{"spec":{"assumeRole":{"tags":[{"key":"rolekeeper.io/owner","value":"x"}]}}}`, "are reserved"),
	roleCase("transitive key naming no tag", `{"spec":{"assumeRole":{"tags":[{"key":"team","value":"a"}],"transitiveTagKeys":["project"]}}}`, "every transitiveTagKeys entry must name a key in tags"),
	roleCase("transitive key without tags", `{"spec":{"assumeRole":{"transitiveTagKeys":["team"]}}}`, "every transitiveTagKeys entry must name a key in tags"),
	roleCase("fifty-one transitive keys", `{"spec":{"assumeRole":{"transitiveTagKeys":`+strs(51, func(i int) string { return fmt.Sprintf("k%d", i) })+`}}}`, "spec.assumeRole.transitiveTagKeys: Too many"),

	// AssumeRoot.
	roleCase("root task policy unknown", `{"spec":{"assumeRole":null,"assumeRoot":{"targetPrincipal":"444455556666","taskPolicy":"AdministratorAccess"}}}`, "spec.assumeRoot.taskPolicy: Unsupported value"),
	roleCase("root task policy missing", `{"spec":{"assumeRole":null,"assumeRoot":{"targetPrincipal":"444455556666"}}}`, "spec.assumeRoot.taskPolicy: Required value"),
	roleCase("root target not an account", `{"spec":{"assumeRole":null,"assumeRoot":{"targetPrincipal":"44445555666x","taskPolicy":"S3UnlockBucketPolicy"}}}`, "targetPrincipal must be a 12-digit AWS account ID or a principal ARN"),
	roleCase("root target too short", `{"spec":{"assumeRole":null,"assumeRoot":{"targetPrincipal":"4444","taskPolicy":"S3UnlockBucketPolicy"}}}`, "spec.assumeRoot.targetPrincipal"),
	roleCase("root duration above 900", `{"spec":{"assumeRole":null,"assumeRoot":{"targetPrincipal":"444455556666","taskPolicy":"S3UnlockBucketPolicy","durationSeconds":901}}}`, "spec.assumeRoot.durationSeconds: Invalid value: 901"),
	roleCase("root duration zero", `{"spec":{"assumeRole":null,"assumeRoot":{"targetPrincipal":"444455556666","taskPolicy":"S3UnlockBucketPolicy","durationSeconds":0}}}`, "spec.assumeRoot.durationSeconds: Invalid value: 0"),

	// Region.
	roleCase("region in capitals", `{"spec":{"region":"US-EAST-1"}}`, "region must be an AWS region code"),
	roleCase("region without dashes", `{"spec":{"region":"useast1"}}`, "region must be an AWS region code"),
	roleCase("region as an endpoint", `{"spec":{"region":"sts.example.com"}}`, "region must be an AWS region code"),
	roleCase("region of no partition", `{"spec":{"region":"xx-east-1"}}`, "region must be an AWS region code of a known partition"),
	roleCase("ecr region of no partition", `{"spec":{"secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{"region":"eusc-fr-east-1"}}}}`, "ecr.region must be an AWS region code of a known partition"),

	// Renewal.
	roleCase("renewBefore and percentage together", `{"spec":{"renewal":{"renewBefore":"20m","renewBeforePercentage":30}}}`, "set at most one of renewal.renewBefore and renewal.renewBeforePercentage"),
	roleCase("renewBefore under a minute", `{"spec":{"renewal":{"renewBefore":"30s"}}}`, "renewal.renewBefore must be between 1m and 12h"),
	roleCase("renewBefore over twelve hours", `{"spec":{"renewal":{"renewBefore":"13h"}}}`, "renewal.renewBefore must be between 1m and 12h"),
	roleCase("renewBefore as long as the session", `{"spec":{"assumeRole":{"durationSeconds":900},"renewal":{"renewBefore":"15m"}}}`, "renewal.renewBefore must be shorter than durationSeconds"),
	roleCase("renewBefore longer than a root session", `{"spec":{"assumeRole":null,"region":"us-east-1","assumeRoot":{"targetPrincipal":"444455556666","taskPolicy":"S3UnlockBucketPolicy","durationSeconds":300},"renewal":{"renewBefore":"10m"}}}`, "renewal.renewBefore must be shorter than durationSeconds"),
	roleCase("renewBeforePercentage 91", `{"spec":{"renewal":{"renewBeforePercentage":91}}}`, "spec.renewal.renewBeforePercentage: Invalid value: 91"),
	roleCase("renewBeforePercentage 0", `{"spec":{"renewal":{"renewBeforePercentage":0}}}`, "spec.renewal.renewBeforePercentage: Invalid value: 0"),

	// Rollout restart targets.
	roleCase("restart target kind Pod", `{"spec":{"rolloutRestartTargets":[{"kind":"Pod","name":"api"}]}}`, "Unsupported value: \"Pod\""),
	roleCase("restart target repeated", `{"spec":{"rolloutRestartTargets":[{"kind":"Deployment","name":"api"},{"kind":"Deployment","name":"api"}]}}`, "Duplicate value"),
	roleCase("restart target invalid name", `{"spec":{"rolloutRestartTargets":[{"kind":"Deployment","name":"API"}]}}`, "rolloutRestartTargets name must be a valid object name"),

	// Secret.
	roleCase("secret name with capitals", `{"spec":{"secret":{"name":"Bad_Name"}}}`, "secret.name must be a DNS subdomain"),
	roleCase("secret name ending in a dash", `{"spec":{"secret":{"name":"creds-"}}}`, "secret.name must be a DNS subdomain"),
	roleCase("profile with a space", `{"spec":{"secret":{"profile":"my profile"}}}`, "profile may contain only letters, digits and _.+-"),
	roleCase("profile with a bracket", `{"spec":{"secret":{"profile":"prod]"}}}`, "profile may contain only letters, digits and _.+-"),
	roleCase("secret label reserved", `{"spec":{"secret":{"labels":{"rolekeeper.io/assumed-role":"other"}}}}`, "secret.labels must not use the reserved rolekeeper.io/ prefix"),
	roleCase("secret annotation reserved", `{"spec":{"secret":{"annotations":{"rolekeeper.io/expiration":"never"}}}}`, "secret.annotations must not use the reserved rolekeeper.io/ prefix"),
	roleCase("template replacing a credential key", `{"spec":{"secret":{"template":{"data":{"AWS_SECRET_ACCESS_KEY":"x"}}}}}`, "secret.template.data cannot replace AWS_ACCESS_KEY_ID"),
	roleCase("template key with a slash", `{"spec":{"secret":{"template":{"data":{"a/b":"x"}}}}}`, "secret.template.data keys must be valid Secret keys"),
	roleCase("image-pull type without ecr", `{"spec":{"secret":{"type":"kubernetes.io/dockerconfigjson"}}}`, "secret.ecr and secret.type kubernetes.io/dockerconfigjson go together"),
	roleCase("ecr without the image-pull type", `{"spec":{"secret":{"ecr":{"region":"eu-west-1"}}}}`, "secret.ecr and secret.type kubernetes.io/dockerconfigjson go together"),
	roleCase("unsupported secret type", `{"spec":{"secret":{"type":"kubernetes.io/tls"}}}`, `Unsupported value: "kubernetes.io/tls"`),
	roleCase("image-pull Secret with a template", `{"spec":{"secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{},"template":{"data":{"x":"y"}}}}}`, "an image-pull Secret holds only .dockerconfigjson"),
	roleCase("image-pull Secret with credentialProcess", `{"spec":{"secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{},"credentialProcess":{"mountPath":"/creds"}}}}`, "an image-pull Secret holds only .dockerconfigjson"),
	roleCase("image-pull Secret for AssumeRoot", `{"spec":{"assumeRole":null,"region":"us-east-1","assumeRoot":{"targetPrincipal":"444455556666","taskPolicy":"S3UnlockBucketPolicy"},"secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{}}}}`, "secret.ecr needs spec.assumeRole"),
	roleCase("ecr registry id not an account", `{"spec":{"secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{"registryIds":["1111-2222-3333"]}}}}`, "should match '^[0-9]{12}$'"),
	roleCase("ecr eleven registries", `{"spec":{"secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{"registryIds":`+strs(11, func(i int) string { return fmt.Sprintf("%012d", i) })+`}}}}`, "must have at most 10 items"),
	roleCase("ecr region invalid", `{"spec":{"secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{"region":"EU"}}}}`, "ecr.region must be an AWS region code"),
	roleCase("mountPath relative", `{"spec":{"secret":{"credentialProcess":{"mountPath":"creds"}}}}`, "mountPath must be an absolute path"),
	roleCase("mountPath with shell characters", `{"spec":{"secret":{"credentialProcess":{"mountPath":"/creds; rm -rf /"}}}}`, "mountPath must be an absolute path"),

	// ClusterAssumedRole: the template is an AssumedRole spec with all of its rules.
	clusterCase("cluster role without a selector", `{"spec":{"namespaceSelector":null}}`, "spec.namespaceSelector: Required value"),
	clusterCase("cluster role without a template spec", `{"spec":{"template":{"spec":null}}}`, "spec.template.spec: Required value"),
	clusterCase("cluster role template with both operations", `{"spec":{"template":{"spec":{"assumeRoot":{"targetPrincipal":"444455556666","taskPolicy":"S3UnlockBucketPolicy"}}}}}`, "set exactly one of spec.assumeRole"),
	clusterCase("cluster role template with a bad role ARN", `{"spec":{"template":{"spec":{"assumeRole":{"roleArn":"arn:aws:iam::1:user/x-long-enough"}}}}}`, "roleArn must be an IAM role ARN"),
	clusterCase("cluster role chaining from itself", `{"spec":{"template":{"spec":{"source":{"assumedRoleRef":{"name":"shared"}}}}}}`, "spec.template.spec.source.assumedRoleRef.name must name another AssumedRole"),
	clusterCase("cluster role reserved template label", `{"spec":{"template":{"metadata":{"labels":{"rolekeeper.io/cluster-assumed-role":"x"}}}}}`, "template.metadata.labels must not use the reserved rolekeeper.io/ prefix"),
	clusterCase("cluster role image-pull template without ecr", `{"spec":{"template":{"spec":{"secret":{"type":"kubernetes.io/dockerconfigjson"}}}}}`, "secret.ecr and secret.type kubernetes.io/dockerconfigjson go together"),

	// AssumedRolePolicy.
	policyCase("policy selects no namespaces", `{"spec":{"namespaces":null}}`, "select namespaces with namespaceSelector"),
	policyCase("policy allows nothing", `{"spec":{"allowedRoleArns":null}}`, "the policy allows nothing"),
	policyCase("policy root targets without task policies", `{"spec":{"allowedRootTargets":["444455556666"]}}`, "allowedRootTargets and allowedTaskPolicies go together"),
	policyCase("policy task policies without root targets", `{"spec":{"allowedTaskPolicies":["S3UnlockBucketPolicy"]}}`, "allowedRootTargets and allowedTaskPolicies go together"),
	policyCase("policy empty role glob", `{"spec":{"allowedRoleArns":[""]}}`, "allowedRoleArns patterns must be non-empty and contain no whitespace"),
	policyCase("policy role glob with a space", `{"spec":{"allowedRoleArns":["arn:aws:iam::111122223333:role/a *"]}}`, "allowedRoleArns patterns must be non-empty and contain no whitespace"),
	policyCase("policy empty root glob", `{"spec":{"allowedRootTargets":[""],"allowedTaskPolicies":["S3UnlockBucketPolicy"]}}`, "allowedRootTargets patterns must be non-empty"),
	policyCase("policy unknown task policy", `{"spec":{"allowedRootTargets":["444455556666"],"allowedTaskPolicies":["RootAll"]}}`, "Unsupported value: \"RootAll\""),
	policyCase("policy max duration zero", `{"spec":{"maxDurationSeconds":0}}`, "spec.maxDurationSeconds: Invalid value: 0"),
	policyCase("policy empty session name glob", `{"spec":{"allowedSessionNames":[""]}}`, "spec.allowedSessionNames[0]"),
	policyCase("policy source identity glob too long", `{"spec":{"allowedSourceIdentities":["`+strings.Repeat("i", 129)+`"]}}`, "spec.allowedSourceIdentities[0]: Too long"),
	policyCase("policy invalid namespace name", `{"spec":{"namespaces":["Team_A"]}}`, "each namespaces entry must be a namespace name"),
}

var validCases = []admissionCase{
	roleCase("chained at exactly one hour", `{"spec":{"assumeRole":{"durationSeconds":3600},"source":{"assumedRoleRef":{"name":"base"}}}}`, ""),
	roleCase("twelve hours unchained", `{"spec":{"assumeRole":{"durationSeconds":43200}}}`, ""),
	roleCase("unicode tags and transitive keys", `{"spec":{"assumeRole":{"tags":[{"key":"équipe","value":"données 1"},{"key":"Cost-Center","value":""}],"transitiveTagKeys":["équipe","COST-CENTER","kubernetes-namespace"]}}}`, ""),
	roleCase("everything at its limit", `{"spec":{"assumeRole":{"sessionName":"`+strings.Repeat("s", 64)+`","externalId":"`+strings.Repeat("e", 1224)+`","sourceIdentity":"ci@example.com","tags":`+tags(47)+`,"policyArns":`+strs(10, func(i int) string { return fmt.Sprintf("arn:aws:iam::aws:policy/P%d", i) })+`}}}`, ""),
	roleCase("root with a principal ARN", `{"spec":{"assumeRole":null,"region":"us-gov-west-1","assumeRoot":{"targetPrincipal":"arn:aws-us-gov:iam::444455556666:root","taskPolicy":"IAMAuditRootUserCredentials"}}}`, ""),
	roleCase("renewal with renewBefore", `{"spec":{"renewal":{"renewBefore":"20m"}}}`, ""),
	roleCase("image-pull Secret for three registries", `{"spec":{"assumeRole":{"durationSeconds":43200},"secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{"registryIds":["111122223333","444455556666","777788889999"],"region":"eu-west-1"}}}}`, ""),
	roleCase("role path with every character IAM allows", `{"spec":{"assumeRole":{"roleArn":"arn:aws:iam::111122223333:role/`+iamPathChars+`/reader"}}}`, ""),
	roleCase("policy ARN with a path", `{"spec":{"assumeRole":{"policyArns":["arn:aws:iam::aws:policy/job-function/ViewOnlyAccess","arn:aws:iam::111122223333:policy/`+iamPathChars+`/p"]}}}`, ""),
	roleCase("policy with tabs, newlines and Latin-1", `{"spec":{"assumeRole":{"policy":"{\t\"Version\": \"2012-10-17\",\r\n \"Statement\": [{\"Sid\": \"Caf\u00e9\u00ff\", \"Effect\": \"Allow\", \"Action\": \"s3:*\", \"Resource\": \"*\"}]}"}}}`, ""),
	roleCase("renewBefore shorter than the session", `{"spec":{"assumeRole":{"durationSeconds":900},"renewal":{"renewBefore":"14m"}}}`, ""),
	roleCase("regions of every partition", `{"spec":{"region":"eusc-de-east-1","secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{"region":"us-isof-south-1"}}}}`, ""),
	roleCase("region of the ISO-E partition", `{"spec":{"region":"eu-isoe-west-1"}}`, ""),
	policyCase("policy governing session names and source identities", `{"spec":{"allowedSessionNames":["team-a.*"],"allowedSourceIdentities":["ci-*","release@example.com"]}}`, ""),
	roleCase("explicit Opaque type", `{"spec":{"secret":{"type":"Opaque","profile":"ci"}}}`, ""),
	clusterCase("cluster role selecting every namespace with an image-pull template", `{"spec":{"namespaceSelector":{},"template":{"metadata":{"labels":{"team":"a"},"annotations":{"rolekeeper.io/rotate":"1"}},"spec":{"secret":{"type":"kubernetes.io/dockerconfigjson","ecr":{}}}}}}`, ""),
	policyCase("policy selecting all namespaces", `{"spec":{"namespaces":null,"namespaceSelector":{}}}`, ""),
}

func object(t *testing.T, c admissionCase) *unstructured.Unstructured {
	t.Helper()
	doc, err := jsonpatch.MergePatch([]byte(c.base), []byte(c.patch))
	if err != nil {
		t.Fatalf("bad patch in test case: %v", err)
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(doc, &u.Object); err != nil {
		t.Fatalf("bad object in test case: %v", err)
	}
	return u
}

func TestAdmissionRefusesInvalidObjects(t *testing.T) {
	if len(invalidCases) < 40 {
		t.Fatalf("the table must hold at least 40 invalid objects, has %d", len(invalidCases))
	}
	for _, c := range invalidCases {
		t.Run(c.name, func(t *testing.T) {
			err := k8s.Create(context.Background(), object(t, c), client.DryRunAll)
			if err == nil {
				t.Fatalf("accepted; want refusal containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("refused with\n  %v\nwant a message containing\n  %q", err, c.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestAdmissionAcceptsValidObjects(t *testing.T) {
	for _, c := range validCases {
		t.Run(c.name, func(t *testing.T) {
			if err := k8s.Create(context.Background(), object(t, c), client.DryRunAll); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

// Every document in config/samples must be accepted as it is.
func TestAdmissionAcceptsSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.Root(), "config", "samples", "rolekeeper_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "demo"}}}
	if err := k8s.Create(context.Background(), ns); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for i := 0; ; i++ {
			doc, err := dec.Read()
			if err != nil {
				break
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			t.Run(fmt.Sprintf("%s#%d", filepath.Base(file), i), func(t *testing.T) {
				if err := k8s.Create(context.Background(), u, client.DryRunAll); err != nil {
					t.Fatalf("sample refused: %v", err)
				}
			})
		}
	}
}
