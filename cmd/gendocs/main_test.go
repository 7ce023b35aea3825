package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// committed is where the generated pages are kept, relative to this package.
const committed = "../../docs/components"

// TestDocsUpToDate fails when docs/components differs from what the
// registered specs render: a spec changed without `go generate ./...`.
func TestDocsUpToDate(t *testing.T) {
	want, err := render(service.GlobalEnvironment())
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(committed, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		have[filepath.Base(f)] = b
	}
	var stale []string
	for name, b := range want {
		if !bytes.Equal(have[name], b) {
			stale = append(stale, name)
		}
	}
	for name := range have {
		if _, ok := want[name]; !ok {
			stale = append(stale, name+" (no such component)")
		}
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		t.Fatalf("docs/components is out of date with the component specs: %s\nrun `go generate ./...` at the repository root and commit the result",
			strings.Join(stale, ", "))
	}
}

// TestRenderComponent checks that a page holds what a reader looks for:
// the status, the config, every field with its default, secrets marked.
func TestRenderComponent(t *testing.T) {
	env := service.NewEnvironment()
	spec := service.NewConfigSpec().
		Beta().
		Version("1.2.0").
		Summary("Sends things.").
		Description("Longer text.").
		Field(service.NewStringField("api_key").Description("The key.").Secret().Default("")).
		Field(service.NewIntField("max_in_flight").Description("Parallel requests.").Default(8).Advanced()).
		Field(service.NewStringEnumField("region", "us", "eu").Description("Data centre.").Default("us"))
	if err := env.RegisterOutput("thing", spec, func(*service.ParsedConfig, *service.Resources) (service.Output, int, error) {
		return nil, 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	pages, err := render(env)
	if err != nil {
		t.Fatal(err)
	}
	p := string(pages["thing.md"])
	for _, want := range []string{
		"# `thing`", "## output", "**Status:** beta · **Since:** 1.2.0", "Sends things.", "Longer text.",
		"Common fields:", "Every field:", "max_in_flight: 8",
		"#### `api_key`", "This field holds a secret", "**Default:** `\"\"`",
		"#### `region`", "**Options:** `us`, `eu`.",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("page lacks %q:\n%s", want, p)
		}
	}
	if idx := string(pages[indexName]); !strings.Contains(idx, "| [`thing`](thing.md) | output | beta | Sends things. |") {
		t.Errorf("index lacks the component row:\n%s", idx)
	}
}

// TestWriteRemovesStalePages checks that a page of a component that no
// longer exists is removed, and that other files are left alone.
func TestWriteRemovesStalePages(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"gone.md", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := write(dir, map[string][]byte{"kept.md": []byte("y\n")}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != "kept.md,notes.txt" {
		t.Fatalf("files after write: %s", got)
	}
}

// TestComponentLabels: every component of this distribution carries the same
// stability label and version, so that the index does not suggest that one is
// more settled than another. All are beta at 0.1.0, the first release.
func TestComponentLabels(t *testing.T) {
	byName, err := collect(service.GlobalEnvironment())
	if err != nil {
		t.Fatal(err)
	}
	if len(byName) == 0 {
		t.Fatal("no component registered")
	}
	for name, cs := range byName {
		for _, c := range cs {
			if c.Data.Status != "beta" || c.Data.Version != "0.1.0" {
				t.Errorf("%s %s: status %q, version %q; want beta, 0.1.0", c.Type, name, c.Data.Status, c.Data.Version)
			}
		}
	}
}
