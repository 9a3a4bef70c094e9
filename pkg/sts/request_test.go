package sts_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

func TestValidateAssumeRole(t *testing.T) {
	ok := func() sts.AssumeRoleRequest { r := fullRequest(); r.Region = "us-east-1"; return r }
	cases := map[string]struct {
		mod  func(*sts.AssumeRoleRequest)
		want string // "" for valid
	}{
		"full request":            {func(*sts.AssumeRoleRequest) {}, ""},
		"bad region":              {func(r *sts.AssumeRoleRequest) { r.Region = "US-EAST-1" }, "region"},
		"role ARN of a user":      {func(r *sts.AssumeRoleRequest) { r.RoleArn = "arn:aws:iam::111122223333:user/x" }, "roleArn must be an IAM role ARN"},
		"short session name":      {func(r *sts.AssumeRoleRequest) { r.SessionName = "a" }, "sessionName must be 2-64"},
		"session name with space": {func(r *sts.AssumeRoleRequest) { r.SessionName = "a b" }, "sessionName may contain only"},
		"duration 899":            {func(r *sts.AssumeRoleRequest) { r.DurationSeconds = 899 }, "durationSeconds must be 900-43200"},
		"duration 43201":          {func(r *sts.AssumeRoleRequest) { r.DurationSeconds = 43201 }, "durationSeconds must be 900-43200"},
		"chained 3601":            {func(r *sts.AssumeRoleRequest) { r.Chained = true; r.DurationSeconds = 3601 }, "900-3600 for a chained role"},
		"chained 3600":            {func(r *sts.AssumeRoleRequest) { r.Chained = true; r.DurationSeconds = 3600 }, ""},
		"external id too short":   {func(r *sts.AssumeRoleRequest) { r.ExternalID = "x" }, "externalId must be 2-1224"},
		"external id with space":  {func(r *sts.AssumeRoleRequest) { r.ExternalID = "a b" }, "externalId may contain only"},
		"source identity aws:":    {func(r *sts.AssumeRoleRequest) { r.SourceIdentity = "AWS:x" }, "must not start with aws:"},
		"policy not JSON":         {func(r *sts.AssumeRoleRequest) { r.Policy = "{" }, "policy is not valid JSON"},
		"eleven policy ARNs": {func(r *sts.AssumeRoleRequest) {
			r.PolicyArns = slices.Repeat([]string{"arn:aws:iam::aws:policy/A"}, 11)
		}, "at most 10 policyArns"},
		"policy ARN of a role":    {func(r *sts.AssumeRoleRequest) { r.PolicyArns = []string{readerRole} }, "policyArns[0] must be an IAM policy ARN"},
		"policy plus ARNs > 2048": {func(r *sts.AssumeRoleRequest) { r.Policy = `{"a":"` + strings.Repeat("x", 2000) + `"}` }, "together must be at most 2048"},
		"fifty-one tags":          {func(r *sts.AssumeRoleRequest) { r.Tags = manyTags(51); r.TransitiveTagKeys = nil }, "at most 50 tags"},
		"tag key bad":             {func(r *sts.AssumeRoleRequest) { r.Tags[1].Key = "a#b" }, "tags[1].key"},
		"tag value too long":      {func(r *sts.AssumeRoleRequest) { r.Tags[1].Value = strings.Repeat("v", 257) }, "tags[1].value"},
		"tag keys equal in case":  {func(r *sts.AssumeRoleRequest) { r.Tags = append(r.Tags, sts.Tag{Key: "ÉQUIPE"}) }, "repeats a key"},
		"transitive key unknown":  {func(r *sts.AssumeRoleRequest) { r.TransitiveTagKeys = []string{"nope"} }, "names no tag"},
		"fifty-one transitive": {func(r *sts.AssumeRoleRequest) {
			r.Tags = manyTags(50)
			r.TransitiveTagKeys = append(tagKeys(manyTags(50)), "k0")
		}, "at most 50 transitiveTagKeys"},
		"multi-byte policy counts": {func(r *sts.AssumeRoleRequest) {
			r.PolicyArns = nil
			r.Policy = `{"a":"` + strings.Repeat("é", 2040) + `"}`
		}, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := ok()
			tc.mod(&r)
			err := r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func manyTags(n int) []sts.Tag {
	out := make([]sts.Tag, n)
	for i := range out {
		out[i] = sts.Tag{Key: fmt.Sprintf("k%d", i), Value: "v"}
	}
	return out
}

func tagKeys(tags []sts.Tag) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.Key
	}
	return out
}

func TestValidateAssumeRoot(t *testing.T) {
	good := sts.AssumeRootRequest{Region: "us-east-1", TargetPrincipal: "444455556666", TaskPolicyArn: sts.TaskPolicyArn("us-east-1", "IAMAuditRootUserCredentials"), DurationSeconds: 900}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		mod  func(*sts.AssumeRootRequest)
		want string
	}{
		"no region":          {func(r *sts.AssumeRootRequest) { r.Region = "" }, "AssumeRoot needs a region"},
		"target not account": {func(r *sts.AssumeRootRequest) { r.TargetPrincipal = "44445555666x" }, "targetPrincipal must be"},
		"task policy custom": {func(r *sts.AssumeRootRequest) { r.TaskPolicyArn = "arn:aws:iam::111122223333:policy/x" }, "taskPolicyArn must be"},
		"duration 901":       {func(r *sts.AssumeRootRequest) { r.DurationSeconds = 901 }, "durationSeconds must be 1-900"},
		"duration 0":         {func(r *sts.AssumeRootRequest) { r.DurationSeconds = 0 }, "durationSeconds must be 1-900"},
	}
	for name, tc := range cases {
		r := good
		tc.mod(&r)
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
	}
}

func TestTaskPolicyArnPartition(t *testing.T) {
	for region, want := range map[string]string{
		"us-east-1":     "arn:aws:iam::aws:policy/root-task/S3UnlockBucketPolicy",
		"cn-north-1":    "arn:aws-cn:iam::aws:policy/root-task/S3UnlockBucketPolicy",
		"us-gov-west-1": "arn:aws-us-gov:iam::aws:policy/root-task/S3UnlockBucketPolicy",
	} {
		if got := sts.TaskPolicyArn(region, "S3UnlockBucketPolicy"); got != want {
			t.Errorf("%s: %s, want %s", region, got, want)
		}
	}
}

func TestDefaultSessionName(t *testing.T) {
	long := strings.Repeat("n", 63)
	cases := []struct{ ns, name, want string }{
		{"payments", "reader", "payments.reader"},
		{"a", "b", "a.b"},
		{"team", long, ""},
	}
	for _, c := range cases {
		got := sts.DefaultSessionName(c.ns, c.name)
		if c.want != "" && got != c.want {
			t.Errorf("%s/%s: %q, want %q", c.ns, c.name, got, c.want)
		}
		if len(got) < 2 || len(got) > 64 {
			t.Errorf("%s/%s: %q has %d characters", c.ns, c.name, got, len(got))
		}
	}
	a, b := sts.DefaultSessionName("team", long+"a"), sts.DefaultSessionName("team", long+"b")
	if a == b {
		t.Errorf("names that differ only past 64 characters collide: %q", a)
	}
	if a != sts.DefaultSessionName("team", long+"a") {
		t.Error("not deterministic")
	}
}

func TestRequestHash(t *testing.T) {
	base := fullRequest()
	h := base.Hash()
	if len(h) != 64 {
		t.Fatalf("hash %q is not sha256 hex", h)
	}
	same := map[string]func(*sts.AssumeRoleRequest){
		"tags reordered":        func(r *sts.AssumeRoleRequest) { slices.Reverse(r.Tags) },
		"policy ARNs reordered": func(r *sts.AssumeRoleRequest) { slices.Reverse(r.PolicyArns) },
		"policy whitespace":     func(r *sts.AssumeRoleRequest) { r.Policy = "  " + strings.ReplaceAll(r.Policy, ",", " ,\n ") },
		"transitive key case":   func(r *sts.AssumeRoleRequest) { r.TransitiveTagKeys = []string{"KUBERNETES-NAMESPACE"} },
	}
	for name, mod := range same {
		r := fullRequest()
		r.Tags = slices.Clone(r.Tags)
		r.PolicyArns = slices.Clone(r.PolicyArns)
		mod(&r)
		if r.Hash() != h {
			t.Errorf("%s changed the hash", name)
		}
	}
	different := map[string]func(*sts.AssumeRoleRequest){
		"region":          func(r *sts.AssumeRoleRequest) { r.Region = "eu-west-1" },
		"role":            func(r *sts.AssumeRoleRequest) { r.RoleArn = deployerRole },
		"session name":    func(r *sts.AssumeRoleRequest) { r.SessionName = "other" },
		"duration":        func(r *sts.AssumeRoleRequest) { r.DurationSeconds = 900 },
		"external id":     func(r *sts.AssumeRoleRequest) { r.ExternalID = "other" },
		"source identity": func(r *sts.AssumeRoleRequest) { r.SourceIdentity = "other" },
		"policy":          func(r *sts.AssumeRoleRequest) { r.Policy = `{}` },
		"policy ARNs":     func(r *sts.AssumeRoleRequest) { r.PolicyArns = r.PolicyArns[:1] },
		"tag value":       func(r *sts.AssumeRoleRequest) { r.Tags = []sts.Tag{{Key: "kubernetes-namespace", Value: "other"}} },
		"transitive keys": func(r *sts.AssumeRoleRequest) { r.TransitiveTagKeys = nil },
		"chained":         func(r *sts.AssumeRoleRequest) { r.Chained = true },
	}
	for name, mod := range different {
		r := fullRequest()
		mod(&r)
		if r.Hash() == h {
			t.Errorf("changing the %s kept the hash", name)
		}
	}
	root := sts.AssumeRootRequest{Region: "us-east-1", TargetPrincipal: "444455556666", TaskPolicyArn: "arn:aws:iam::aws:policy/root-task/S3UnlockBucketPolicy", DurationSeconds: 900}
	root2 := root
	root2.TargetPrincipal = "444455556667"
	if root.Hash() == root2.Hash() || root.Hash() == h {
		t.Error("AssumeRoot hashes collide")
	}
}

// Validate never panics, and whatever it accepts respects the limits AWS documents.
func FuzzValidateAssumeRole(f *testing.F) {
	f.Add(readerRole, "payments.reader", int32(3600), "ext", "src", `{"a":1}`, "arn:aws:iam::aws:policy/A", "team", "core", "team", false)
	f.Add("arn:aws:iam::1:role/x", "a", int32(0), "", "aws:x", "{", "", "", "", "x", true)
	f.Add(readerRole, strings.Repeat("s", 65), int32(43201), "a b", "é", "[]", "arn:aws:iam::aws:policy/"+strings.Repeat("p", 2048), "ÉQUIPE", strings.Repeat("v", 257), "équipe", true)
	f.Fuzz(func(t *testing.T, role, session string, duration int32, ext, src, policy, arn, key, value, transitive string, chained bool) {
		r := sts.AssumeRoleRequest{Region: "us-east-1", RoleArn: role, SessionName: session, DurationSeconds: duration, ExternalID: ext, SourceIdentity: src, Policy: policy, Chained: chained}
		if arn != "" {
			r.PolicyArns = []string{arn}
		}
		if key != "" {
			r.Tags = []sts.Tag{{Key: key, Value: value}, {Key: "k2", Value: value}}
		}
		if transitive != "" {
			r.TransitiveTagKeys = []string{transitive}
		}
		_ = r.Hash()
		if r.Validate() != nil {
			return
		}
		n := utf8.RuneCountInString
		maxDuration := int32(43200)
		if chained {
			maxDuration = 3600
		}
		if n(role) < 20 || n(session) < 2 || n(session) > 64 || duration < 900 || duration > maxDuration ||
			(ext != "" && (n(ext) < 2 || n(ext) > 1224)) || (src != "" && strings.HasPrefix(strings.ToLower(src), "aws:")) ||
			n(policy)+n(arn) > 2048 || (key != "" && (n(key) > 128 || n(value) > 256 || strings.EqualFold(key, "k2"))) {
			t.Fatalf("accepted an out-of-limit request: %+v", r)
		}
		if transitive != "" && !strings.EqualFold(transitive, key) && !strings.EqualFold(transitive, "k2") {
			t.Fatalf("accepted a transitive key that names no tag: %+v", r)
		}
	})
}

// Reordering tags never changes the hash of a request.
func FuzzRequestHashOrderInsensitive(f *testing.F) {
	f.Add("a", "1", "b", "2", "c", "3")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		if strings.EqualFold(k1, k2) || strings.EqualFold(k2, k3) || strings.EqualFold(k1, k3) {
			return // duplicate keys are invalid anyway
		}
		r := fullRequest()
		r.Tags = []sts.Tag{{Key: k1, Value: v1}, {Key: k2, Value: v2}, {Key: k3, Value: v3}}
		h := r.Hash()
		r.Tags = []sts.Tag{{Key: k3, Value: v3}, {Key: k1, Value: v1}, {Key: k2, Value: v2}}
		if r.Hash() != h {
			t.Fatalf("tag order changed the hash for %q %q %q", k1, k2, k3)
		}
	})
}
