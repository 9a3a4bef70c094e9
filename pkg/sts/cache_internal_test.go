package sts

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Regions come from AssumedRoles: however many a tenant names, the client keeps service
// clients for at most maxRegionalClients, the most recently used.
func TestRegionalClientsAreBounded(t *testing.T) {
	c := New(aws.Config{Region: "us-east-1"}, Options{})
	for i := range 10 * maxRegionalClients {
		c.forRegion(fmt.Sprintf("us-place%d-1", i))
		c.ecrFor(fmt.Sprintf("us-place%d-1", i))
		c.forRegion("us-east-1") // in use all along
	}
	if n := c.regional.Len(); n > maxRegionalClients {
		t.Errorf("%d STS clients kept, want at most %d", n, maxRegionalClients)
	}
	if n := c.ecr.Len(); n > maxRegionalClients {
		t.Errorf("%d ECR clients kept, want at most %d", n, maxRegionalClients)
	}
	if _, ok := c.regional.Get("us-east-1"); !ok {
		t.Error("the region in use all along was dropped")
	}
}
