package broker

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// TestMessagesRepeatNothingOfTheURL: whatever shape a Secret's value has,
// the errors about it say what is wrong and contain none of it.
func TestMessagesRepeatNothingOfTheURL(t *testing.T) {
	for _, tc := range []struct {
		value   string
		canary  []string
		message string
	}{
		{"s3cr3tTokXYZ", []string{"s3cr3tTokXYZ"}, "broker URL has no scheme: want redis://, rediss://, amqp:// or amqps://"},
		{"token:s3cr3tTokXYZ", []string{"token", "s3cr3tTokXYZ"}, "broker URL has a scheme the autoscaler cannot read: want redis, rediss, amqp or amqps"},
		{"memcached://admin:s3cr3tPw@cache:11211", []string{"memcached", "admin", "s3cr3tPw"}, "broker URL has a scheme the autoscaler cannot read: want redis, rediss, amqp or amqps"},
		{`{"url": "redis://:s3cr3tPw@h"}`, []string{"s3cr3tPw"}, "broker URL is not a URL"},
		{"redis://:s3cr3t\nPw@host", []string{"s3cr3t", "Pw"}, "broker URL is not a URL"},
		{"redis://s3cr3tUser:s3cr3tPw@", []string{"s3cr3tUser", "s3cr3tPw"}, "broker URL has no host"},
	} {
		_, err := Parse(tc.value)
		if err == nil || err.Error() != tc.message {
			t.Errorf("Parse(%q) = %v, want %q", tc.value, err, tc.message)
			continue
		}
		for _, c := range tc.canary {
			if strings.Contains(err.Error(), c) {
				t.Errorf("Parse(%q): %q repeats %q", tc.value, err, c)
			}
		}
	}
	for _, v := range []string{"rabbit:15672", "http://", "ftp://guest:s3cr3tPw@rabbit"} {
		if err := ParseManagement(v); err == nil || strings.Contains(err.Error(), "s3cr3tPw") || strings.Contains(err.Error(), "rabbit") {
			t.Errorf("ParseManagement(%q) = %v", v, err)
		}
	}
}

func TestRedactHidesUserAndPassword(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://:s3cr3tPw@redis:6379/0":              "redis://:xxxxx@redis:6379/0",
		"redis://s3cr3tTok@redis:6379/0":              "redis://xxxxx@redis:6379/0",
		"amqp://guest:guest@rabbit:5672//":            "amqp://xxxxx:xxxxx@rabbit:5672//",
		"redis://redis:6379/0":                        "redis://redis:6379/0",
		"redis://redis:6379/0?password=s3cr3tPw&db=1": "redis://redis:6379/0?db=xxxxx&password=xxxxx",
		"rediss://redis:6380/0#s3cr3tFrag":            "rediss://redis:6380/0",
	} {
		if got := Redact(raw); got != want {
			t.Errorf("Redact(%q) = %q, want %q", raw, got, want)
		}
	}
	u, _ := url.Parse("amqp://s3cr3tUser:s3cr3tPw@rabbit:5672//")
	err := redactErr(errors.New("login s3cr3tUser/s3cr3tPw refused"), u)
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("redactErr: %v", err)
	}
	u, _ = url.Parse("redis://redis:6379/0?password=s3cr3t%2BPw")
	if err := redactErr(errors.New("bad option password=s3cr3t+Pw (s3cr3t%2BPw)"), u); strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("redactErr of a query value: %v", err)
	}
}
