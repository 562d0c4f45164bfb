package engines

import "testing"

func TestIsClientCredential(t *testing.T) {
	for name, want := range map[string]bool{
		"Authorization": true, "authorization": true, "Proxy-Authorization": true, "Cookie": true,
		"X-Api-Key": true, "Api-Key": true, "X-Goog-Api-Key": true, "X-Auth-Token": true,
		"X-Custom-Token": true, "Openai-Secret": true, "X-TEAM-APIKEY": true, "Keycloak-Session": true,
		"Content-Type": false, "Accept": false, "X-Request-Id": false, "User-Agent": false,
		"X-Stainless-Lang": false, "Anthropic-Version": false, "Ke": false, "Tok": false,
		"Idempotency-Key": false, "idempotency-key": false, "X-Idempotency-Key-Secret": true,
	} {
		if got := IsClientCredential(name); got != want {
			t.Errorf("IsClientCredential(%q) = %v, want %v", name, got, want)
		}
	}
}
