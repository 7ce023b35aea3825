package redact

import "testing"

func TestRedactor(t *testing.T) {
	r := New("key-123", "", "secret-456")
	got := r.String(`{"error":"Invalid API key: key-123","echo":"secret-456 key-123"}`)
	want := `{"error":"Invalid API key: [redacted]","echo":"[redacted] [redacted]"}`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got := (Redactor{}).String("key-123"); got != "key-123" {
		t.Fatalf("the zero Redactor changed its input: %s", got)
	}
	if got := New("").String("anything"); got != "anything" {
		t.Fatalf("an empty secret redacted text: %s", got)
	}
}
