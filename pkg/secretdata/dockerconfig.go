package secretdata

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// KeyDockerConfigJSON is the data key of an image-pull Secret (type kubernetes.io/dockerconfigjson).
const KeyDockerConfigJSON = ".dockerconfigjson"

// RegistryAuth is the login to one container registry.
type RegistryAuth struct {
	// Server is the registry host, without scheme, for example
	// 111122223333.dkr.ecr.eu-west-1.amazonaws.com.
	Server   string
	Username string
	Password string
}

type dockerAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"`
}

type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

// DockerConfigJSON renders the .dockerconfigjson of an image-pull Secret: one entry per registry
// with username, password and the base64 "username:password" auth field that docker, containerd
// and the kubelet read. Deterministic: the same logins always render the same bytes.
func DockerConfigJSON(auths []RegistryAuth) []byte {
	cfg := dockerConfig{Auths: map[string]dockerAuth{}}
	for _, a := range auths {
		cfg.Auths[a.Server] = dockerAuth{Username: a.Username, Password: a.Password, Auth: base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password))}
	}
	b, err := json.Marshal(cfg) // map keys are sorted
	if err != nil {
		panic(err) // strings only; cannot fail
	}
	return b
}

// ParseDockerConfigJSON reads the logins back from .dockerconfigjson, sorted by server. It fails
// when the document is not one rolekeeper could have written: no registries, a registry without
// credentials, or an auth field that disagrees with username and password. The error never
// quotes the document.
func ParseDockerConfigJSON(b []byte) ([]RegistryAuth, error) {
	var cfg dockerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, errors.New("not a JSON docker config")
	}
	if len(cfg.Auths) == 0 {
		return nil, errors.New("no registries under auths")
	}
	out := make([]RegistryAuth, 0, len(cfg.Auths))
	for server, a := range cfg.Auths {
		if server == "" || a.Username == "" || a.Password == "" {
			return nil, fmt.Errorf("registry %q lacks a username or password", server)
		}
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil || string(raw) != a.Username+":"+a.Password {
			return nil, fmt.Errorf("the auth field of registry %q does not match its username and password", server)
		}
		out = append(out, RegistryAuth{Server: server, Username: a.Username, Password: a.Password})
	}
	slices.SortFunc(out, func(a, b RegistryAuth) int { return strings.Compare(a.Server, b.Server) })
	return out, nil
}
