// Package secretdata renders issued credentials into the data of a Kubernetes Secret: environment
// keys for envFrom, a shared credentials file, and (on request) a credential_process JSON and a
// config file that reads it. Pure functions of plain values.
package secretdata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Data keys of the Secret.
const (
	KeyAccessKeyID          = "AWS_ACCESS_KEY_ID"
	KeySecretAccessKey      = "AWS_SECRET_ACCESS_KEY"
	KeySessionToken         = "AWS_SESSION_TOKEN"
	KeyCredentialExpiration = "AWS_CREDENTIAL_EXPIRATION"
	KeyRegion               = "AWS_REGION"
	// KeyDefaultRegion carries the same region for SDKs that read only AWS_DEFAULT_REGION
	// (botocore: boto3 and the AWS CLI v1).
	KeyDefaultRegion     = "AWS_DEFAULT_REGION"
	KeyCredentials       = "credentials"
	KeyConfig            = "config"
	KeyCredentialProcess = "credential_process.json"
)

// Input is what goes into the Secret.
type Input struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
	// Region is written as AWS_REGION and into config when not empty.
	Region string
	// Profile names the profile in the files; default "default".
	Profile string
	// CredentialProcessMountPath, when set, adds credential_process.json and config, whose
	// profile runs `cat <mountPath>/credential_process.json`.
	CredentialProcessMountPath string
}

func (in Input) profile() string {
	if in.Profile == "" {
		return "default"
	}
	return in.Profile
}

// Render returns the Secret data for in. The same input always renders the same bytes.
func Render(in Input) map[string][]byte {
	exp := in.Expiration.UTC().Format(time.RFC3339)
	data := map[string][]byte{
		KeyAccessKeyID:          []byte(in.AccessKeyID),
		KeySecretAccessKey:      []byte(in.SecretAccessKey),
		KeySessionToken:         []byte(in.SessionToken),
		KeyCredentialExpiration: []byte(exp),
		KeyCredentials: fmt.Appendf(nil, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n",
			in.profile(), in.AccessKeyID, in.SecretAccessKey, in.SessionToken),
	}
	if in.Region != "" {
		data[KeyRegion] = []byte(in.Region)
		data[KeyDefaultRegion] = []byte(in.Region)
	}
	if in.CredentialProcessMountPath != "" {
		data[KeyCredentialProcess] = credentialProcessJSON(in, exp)
		data[KeyConfig] = configFile(in)
	}
	return data
}

// Keys returns the data keys Render produces for in, so a Secret can be checked for missing or
// stray keys without rendering credentials.
func Keys(in Input) []string {
	keys := []string{KeyAccessKeyID, KeySecretAccessKey, KeySessionToken, KeyCredentialExpiration, KeyCredentials}
	if in.Region != "" {
		keys = append(keys, KeyRegion, KeyDefaultRegion)
	}
	if in.CredentialProcessMountPath != "" {
		keys = append(keys, KeyCredentialProcess, KeyConfig)
	}
	return keys
}

func credentialProcessJSON(in Input, exp string) []byte {
	// Field order as the AWS SDKs document the credential_process output.
	out, err := json.Marshal(struct {
		Version         int
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
		SessionToken    string
		Expiration      string
	}{1, in.AccessKeyID, in.SecretAccessKey, in.SessionToken, exp})
	if err != nil {
		panic(err) // a struct of strings always marshals
	}
	return append(out, '\n')
}

func configFile(in Input) []byte {
	var b bytes.Buffer
	if p := in.profile(); p == "default" {
		b.WriteString("[default]\n")
	} else {
		fmt.Fprintf(&b, "[profile %s]\n", p)
	}
	fmt.Fprintf(&b, "credential_process = cat %s/%s\n", trimSlash(in.CredentialProcessMountPath), KeyCredentialProcess)
	if in.Region != "" {
		fmt.Fprintf(&b, "region = %s\n", in.Region)
	}
	return b.Bytes()
}

func trimSlash(p string) string {
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}

// Credentials reads the credentials back from Secret data; ok is false when a key is missing or
// empty or the expiration does not parse.
func Credentials(data map[string][]byte) (in Input, ok bool) {
	in.AccessKeyID = string(data[KeyAccessKeyID])
	in.SecretAccessKey = string(data[KeySecretAccessKey])
	in.SessionToken = string(data[KeySessionToken])
	exp, err := time.Parse(time.RFC3339, string(data[KeyCredentialExpiration]))
	in.Expiration = exp
	return in, err == nil && in.AccessKeyID != "" && in.SecretAccessKey != "" && in.SessionToken != ""
}

// CredentialsPresent is Credentials for data whose values are known to be as written and so not
// kept (the operator's cache): the credential keys are there and the expiration parses.
func CredentialsPresent(data map[string][]byte) (expiration time.Time, ok bool) {
	for _, k := range []string{KeyAccessKeyID, KeySecretAccessKey, KeySessionToken} {
		if _, present := data[k]; !present {
			return time.Time{}, false
		}
	}
	exp, err := time.Parse(time.RFC3339, string(data[KeyCredentialExpiration]))
	return exp, err == nil
}
