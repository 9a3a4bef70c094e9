package ststest

import "testing"

func TestPolicyGrammar(t *testing.T) {
	for doc, ok := range map[string]bool{
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`: true,
		`{"Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}`:                              true,
		`{not json`:                 false,
		`[]`:                        false,
		`{"Version":"2012-10-17"}`:  false,
		`{"Statement":[]}`:          false,
		`{"Statement":"allow all"}`: false,
		`{"Statement":[{"Effect":"Maybe","Action":"*"}]}`:           false,
		`{"Version":"2020-01-01","Statement":[{"Effect":"Allow"}]}`: false,
	} {
		if got := policyGrammar(doc) == ""; got != ok {
			t.Errorf("%s: accepted=%v, want %v (%s)", doc, got, ok, policyGrammar(doc))
		}
	}
}
