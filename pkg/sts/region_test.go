package sts_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

// sdkPartition is one entry of aws-sdk-go-v2's partition table.
type sdkPartition struct {
	ID          string                     `json:"id"`
	RegionRegex string                     `json:"regionRegex"`
	Regions     map[string]json.RawMessage `json:"regions"`
}

// sdkPartitions reads the partition table of the aws-sdk-go-v2 this module builds with.
func sdkPartitions(t *testing.T) []sdkPartition {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/aws/aws-sdk-go-v2").Output()
	if err != nil {
		t.Fatalf("locating aws-sdk-go-v2: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "internal", "endpoints", "awsrulesfn", "partitions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Partitions []sdkPartition `json:"partitions"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Partitions) < 8 {
		t.Fatalf("the SDK's table has %d partitions", len(doc.Partitions))
	}
	return doc.Partitions
}

// Every region of every partition the SDK knows is accepted and mapped to its partition, by
// ValidRegion, Partition and the pattern the CRDs use; so is a new region name of each
// partition's pattern.
func TestPartitionsFollowTheSDK(t *testing.T) {
	crdPattern := regexp.MustCompile(sts.RegionPattern)
	for _, p := range sdkPartitions(t) {
		sdkRe := regexp.MustCompile(p.RegionRegex)
		var regions []string
		for r := range p.Regions {
			if !strings.HasSuffix(r, "-global") {
				regions = append(regions, r)
			}
		}
		if len(regions) == 0 {
			t.Errorf("partition %s lists no region", p.ID)
		}
		// A region AWS has not opened yet: the partition's prefix, a new name, a number.
		if i := strings.LastIndex(regions[0], "-"); i > 0 {
			prefix := regions[0][:strings.LastIndex(regions[0][:i], "-")]
			regions = append(regions, prefix+"-newplace-9")
		}
		for _, r := range regions {
			if !sdkRe.MatchString(r) && p.Regions[r] == nil {
				t.Errorf("%s: %s is neither listed nor matched by the SDK's pattern", p.ID, r)
			}
			if !sts.ValidRegion(r) || !crdPattern.MatchString(r) {
				t.Errorf("%s: region %s refused (ValidRegion %v, CRD pattern %v)", p.ID, r, sts.ValidRegion(r), crdPattern.MatchString(r))
			}
			if got := sts.Partition(r); got != p.ID {
				t.Errorf("%s: Partition(%s) = %s", p.ID, r, got)
			}
		}
	}
}

// The CRDs' region rule is RegionPattern, and ValidRegion agrees with it on names of every shape.
func TestRegionPatternMatchesPartitions(t *testing.T) {
	crdPattern := regexp.MustCompile(sts.RegionPattern)
	for _, r := range []string{"us-east-1", "eusc-de-east-1", "us-isof-south-1", "eu-isoe-west-1", "cn-northwest-1", "us-gov-west-1",
		"useast1", "xx-east-1", "us-east", "US-EAST-1", "eusc-fr-east-1", "us-east-1 ", "us--1", "us-east-1a", "ap-southeast-10", "aws-global", ""} {
		if sts.ValidRegion(r) != crdPattern.MatchString(r) {
			t.Errorf("%q: ValidRegion %v, CRD pattern %v", r, sts.ValidRegion(r), crdPattern.MatchString(r))
		}
	}
	for _, f := range []string{"rolekeeper.io_assumedroles.yaml", "rolekeeper.io_clusterassumedroles.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", f))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "self.matches('"+sts.RegionPattern+"')"); n != 2 {
			t.Errorf("%s: %d region rules use sts.RegionPattern, want 2 (spec.region and secret.ecr.region)", f, n)
		}
	}
}
