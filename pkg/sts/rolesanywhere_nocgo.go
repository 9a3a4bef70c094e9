//go:build !cgo

package sts

import (
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func newRolesAnywhereProvider(RolesAnywhere) (aws.CredentialsProvider, error) {
	return nil, errors.New("this rolekeeper binary was built without cgo, and IAM Roles Anywhere's signing library (github.com/aws/rolesanywhere-credential-helper) needs it: build with CGO_ENABLED=1, as the image is")
}
