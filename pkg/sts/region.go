package sts

import "regexp"

// partitions are the AWS partitions and the region codes each serves, as aws-sdk-go-v2's
// partition table has them (internal/endpoints/awsrulesfn/partitions.json, whose regionRegex
// patterns these follow with \w narrowed to lower-case letters and digits). A region belongs to
// the first partition whose pattern it matches; the commercial pattern admits only two-part
// names, so the order does not matter. TestPartitionsFollowTheSDK checks this table against the
// SDK's file.
var partitions = []struct {
	id string
	re *regexp.Regexp
}{
	{"aws", regexp.MustCompile(`^(us|eu|ap|sa|ca|me|af|il|mx)-[a-z0-9]+-[0-9]+$`)},
	{"aws-cn", regexp.MustCompile(`^cn-[a-z0-9]+-[0-9]+$`)},
	{"aws-us-gov", regexp.MustCompile(`^us-gov-[a-z0-9]+-[0-9]+$`)},
	{"aws-iso", regexp.MustCompile(`^us-iso-[a-z0-9]+-[0-9]+$`)},
	{"aws-iso-b", regexp.MustCompile(`^us-isob-[a-z0-9]+-[0-9]+$`)},
	{"aws-iso-e", regexp.MustCompile(`^eu-isoe-[a-z0-9]+-[0-9]+$`)},
	{"aws-iso-f", regexp.MustCompile(`^us-isof-[a-z0-9]+-[0-9]+$`)},
	{"aws-eusc", regexp.MustCompile(`^eusc-de-[a-z0-9]+-[0-9]+$`)},
}

// RegionPattern is the union of the partitions' patterns, for the CRDs' CEL rules (which
// TestRegionPatternMatchesPartitions keeps equal to ValidRegion).
const RegionPattern = `^((us|eu|ap|sa|ca|me|af|il|mx|cn)-[a-z0-9]+|(us-gov|us-iso|us-isob|us-isof|eu-isoe|eusc-de)-[a-z0-9]+)-[0-9]+$`

// ValidRegion reports whether region is a region code of a known AWS partition. Whether the
// region exists is for DNS to say: a well-formed region whose STS endpoint does not resolve
// fails with CodeRegionUnknown.
func ValidRegion(region string) bool { return partitionOf(region) != "" }

// Partition returns the AWS partition of a region code ("aws" for one of no known partition,
// which ValidRegion refuses).
func Partition(region string) string {
	if p := partitionOf(region); p != "" {
		return p
	}
	return "aws"
}

func partitionOf(region string) string {
	if len(region) > 64 {
		return ""
	}
	for _, p := range partitions {
		if p.re.MatchString(region) {
			return p.id
		}
	}
	return ""
}
