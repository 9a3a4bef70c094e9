package sts

import (
	"regexp"
	"testing"
)

// TestPolicyCharsIsTheCharacterSet: policyChars accepts exactly what the character class of STS's
// documentation accepts, rune by rune up to U+0200 and around it, with bytes that are not UTF-8
// and in the middle of a policy.
func TestPolicyCharsIsTheCharacterSet(t *testing.T) {
	class := regexp.MustCompile(`^[\t\n\r\x{20}-\x{FF}]*$`)
	var inputs []string
	for c := rune(0); c <= 0x200; c++ {
		inputs = append(inputs, string(c), `{"Version":"2012-10-17","x":"`+string(c)+`"}`)
	}
	inputs = append(inputs, "", "\xff", "a\xc3", "\xc3\xa9", "€", "\U0001F600", "\x00", "\u2028", "\ufffd")
	accepted := 0
	for _, s := range inputs {
		want := class.MatchString(s)
		if got := policyChars(s); got != want {
			t.Errorf("policyChars(%q) = %v, the character class says %v", s, got, want)
		}
		if want {
			accepted++
		}
	}
	if accepted < 400 || accepted == len(inputs) {
		t.Fatalf("%d of %d inputs accepted: the inputs do not test both sides", accepted, len(inputs))
	}
}
