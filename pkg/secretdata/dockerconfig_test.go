package secretdata_test

import (
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

func TestDockerConfigJSONGolden(t *testing.T) {
	auths := []secretdata.RegistryAuth{
		{Server: "444455556666.dkr.ecr.eu-west-1.amazonaws.com", Username: "AWS", Password: "pw-b"},
		{Server: "111122223333.dkr.ecr.eu-west-1.amazonaws.com", Username: "AWS", Password: "pw-a"},
	}
	got := string(secretdata.DockerConfigJSON(auths))
	want := `{"auths":{"111122223333.dkr.ecr.eu-west-1.amazonaws.com":{"username":"AWS","password":"pw-a","auth":"` +
		base64.StdEncoding.EncodeToString([]byte("AWS:pw-a")) + `"},"444455556666.dkr.ecr.eu-west-1.amazonaws.com":{"username":"AWS","password":"pw-b","auth":"` +
		base64.StdEncoding.EncodeToString([]byte("AWS:pw-b")) + `"}}}`
	if got != want {
		t.Fatalf("rendered\n%s\nwant\n%s", got, want)
	}
	back, err := secretdata.ParseDockerConfigJSON([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	if want := []secretdata.RegistryAuth{auths[1], auths[0]}; !reflect.DeepEqual(back, want) {
		t.Fatalf("parsed %+v, want %+v", back, want)
	}
}

func TestParseDockerConfigJSONRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":          `{"auths":`,
		"no registries":     `{"auths":{}}`,
		"no auths key":      `{"credHelpers":{"x":"ecr-login"}}`,
		"no password":       `{"auths":{"r":{"username":"AWS","auth":"QVdTOg=="}}}`,
		"auth disagrees":    `{"auths":{"r":{"username":"AWS","password":"secret-pw","auth":"QVdTOm90aGVy"}}}`,
		"auth not base64":   `{"auths":{"r":{"username":"AWS","password":"secret-pw","auth":"%%%"}}}`,
		"empty server name": `{"auths":{"":{"username":"AWS","password":"secret-pw","auth":"QVdTOnNlY3JldC1wdw=="}}}`,
	} {
		_, err := secretdata.ParseDockerConfigJSON([]byte(doc))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("%s: error quotes the password: %v", name, err)
		}
	}
}
