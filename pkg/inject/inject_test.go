package inject

import (
	"flag"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/rolekeeper/rolekeeper/pkg/credserver"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const goldenImage = "ghcr.io/rolekeeper/rolekeeper:0.2.0"

var testConfig = Config{Image: goldenImage, ImagePullPolicy: corev1.PullIfNotPresent, SecretName: "reader", Region: "eu-west-1"}

// goldenConfig is the Config the golden files are made with, the same facts the webhook's
// integration test (webhooks/) sets up on a real API server: AssumedRole "reader" sets region
// eu-west-1; any other AssumedRole does not exist yet, so its Secret has the default name and no
// region is known.
func goldenConfig(pod *corev1.Pod) Config {
	name := pod.Labels[LabelAssumedRole]
	cfg := Config{Image: goldenImage, ImagePullPolicy: corev1.PullIfNotPresent, SecretName: name}
	if name == "reader" {
		cfg.Region = "eu-west-1"
	}
	return cfg
}

func readPod(t *testing.T, file string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(b, pod); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return pod
}

// TestGolden: each pod in testdata/*.in.yaml becomes testdata/*.golden.yaml, and mutating the
// result again changes nothing (webhook reinvocation, or a pod created from an injected one).
func TestGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.in.yaml")
	if len(inputs) < 4 {
		t.Fatalf("only %d golden inputs", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			pod := readPod(t, in)
			cfg := goldenConfig(pod)
			before := pod.DeepCopy()
			got, err := Mutate(pod, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(pod, before) {
				t.Fatal("Mutate changed its input")
			}
			out, err := yaml.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != string(want) {
				t.Fatalf("%s differs (go test ./pkg/inject -update rewrites it):\n%s", golden, out)
			}
			again, err := Mutate(got, cfg)
			if err != nil || !equality.Semantic.DeepEqual(again, got) {
				t.Fatalf("second mutation changed the pod (%v)", err)
			}
		})
	}
}

// TestDocumentedMutation: docs/credentials-sidecar.md shows exactly what the basic pod becomes.
func TestDocumentedMutation(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "credentials-sidecar.md"))
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/basic.golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(golden)+"```\n") {
		t.Fatal("docs/credentials-sidecar.md does not show testdata/basic.golden.yaml as the injected pod")
	}
}

func TestRefused(t *testing.T) {
	base := func() *corev1.Pod { return readPod(t, "testdata/basic.in.yaml") }
	cases := map[string]struct {
		pod  func() *corev1.Pod
		cfg  Config
		want string
	}{
		"hostNetwork": {func() *corev1.Pod { p := base(); p.Spec.HostNetwork = true; return p }, testConfig, "hostNetwork"},
		"port taken by a container": {func() *corev1.Pod {
			p := base()
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: credserver.DefaultPort}}
			return p
		}, testConfig, "set the annotation rolekeeper.io/credentials-port"},
		"port annotation not a number": {func() *corev1.Pod {
			p := base()
			p.Annotations = map[string]string{AnnotationPort: "http"}
			return p
		}, testConfig, "1024 to 65535"},
		"privileged port": {func() *corev1.Pod {
			p := base()
			p.Annotations = map[string]string{AnnotationPort: "80"}
			return p
		}, testConfig, "1024 to 65535"},
		"token directory taken": {func() *corev1.Pod {
			p := base()
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: TokenDir + "/"}}
			return p
		}, testConfig, "where the credentials token goes"},
		"no image configured": {base, Config{SecretName: "x"}, "no sidecar image"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Mutate(c.pod(), c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestTokenPathsAgree(t *testing.T) {
	if path.Dir(credserver.DefaultTokenFile) != TokenDir {
		t.Fatalf("the sidecar writes %s, the containers mount %s", credserver.DefaultTokenFile, TokenDir)
	}
}
