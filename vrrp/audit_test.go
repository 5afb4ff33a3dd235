package vrrp

import "testing"

func TestClassify(t *testing.T) {
	cases := []struct {
		macs     []string
		expected string
		want     AuditStatus
	}{
		{nil, "", AuditNone},
		{[]string{"02:00:00:00:00:01"}, "", AuditOK},
		{[]string{"02:00:00:00:00:01"}, "02:00:00:00:00:01", AuditOK},
		{[]string{"02:00:00:00:00:01"}, "02:00:00:00:00:0A", AuditUnexpected},
		{[]string{"02:00:00:00:00:01", "02:00:00:00:00:02"}, "", AuditDuplicate},
		{nil, "02:00:00:00:00:01", AuditNone},
	}
	for _, c := range cases {
		if got := Classify(c.macs, c.expected); got != c.want {
			t.Errorf("Classify(%v, %q) = %s, want %s", c.macs, c.expected, got, c.want)
		}
	}
}
