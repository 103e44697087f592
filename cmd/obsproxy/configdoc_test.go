package main

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// updateDocs rewrites docs/configuration.md instead of comparing it:
//
//	go test ./cmd/obsproxy -run '^TestConfigDoc$' -update   (what make docs runs)
var updateDocs = flag.Bool("update", false, "rewrite docs/configuration.md from the Config struct tags")

// configDocPath is docs/configuration.md seen from this package's directory,
// where go test runs.
var configDocPath = filepath.Join("..", "..", "docs", "configuration.md")

// specPath is the product contract, outside the repository: CI has shared/
// beside the clone, so it is ../shared/spec/obsproxy.md from the repository root.
var specPath = filepath.Join("..", "..", "..", "shared", "spec", "obsproxy.md")

func renderConfigDoc(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, writeConfigDoc(&buf))
	return buf.String()
}

// TestConfigDoc fails when docs/configuration.md is not what the code
// generates; with -update it rewrites the file.
func TestConfigDoc(t *testing.T) {
	want := renderConfigDoc(t)
	if *updateDocs {
		require.NoError(t, os.WriteFile(configDocPath, []byte(want), 0o644))
		t.Logf("wrote %s", configDocPath)
		return
	}
	got, err := os.ReadFile(configDocPath)
	require.NoError(t, err, "docs/configuration.md is missing; generate it with: make docs")
	if string(got) == want {
		return
	}
	gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(want, "\n")
	line := 0
	for line < len(gotLines) && line < len(wantLines) && gotLines[line] == wantLines[line] {
		line++
	}
	at := func(lines []string) string {
		if line < len(lines) {
			return lines[line]
		}
		return "(end of file)"
	}
	t.Fatalf("docs/configuration.md is out of date with the Config struct tags (generated file: do not edit it by hand).\n"+
		"Regenerate it with: make docs   (or: go test ./cmd/obsproxy -run '^TestConfigDoc$' -update)\n"+
		"first difference at line %d:\n  file:      %s\n  generated: %s", line+1, at(gotLines), at(wantLines))
}

// TestConfigDocGroups checks that every setting names a known group and
// that every group has settings, so that no section is empty and no
// setting is left out.
func TestConfigDocGroups(t *testing.T) {
	known := make(map[string]int)
	for _, g := range configGroups {
		_, dup := known[g.Key]
		require.False(t, dup, "group %q listed twice", g.Key)
		known[g.Key] = 0
		assert.NotEmpty(t, g.Title, g.Key)
		assert.NotEmpty(t, g.Intro, g.Key)
	}
	for _, r := range settingRows() {
		g := settingGroup(r)
		_, ok := known[g]
		if assert.True(t, ok, "Config.%s (%s) has group %q, not one of configGroups", r.Field, r.Var, g) {
			known[g]++
		}
	}
	for key, n := range known {
		assert.Positive(t, n, "group %q has no setting", key)
	}
}

// TestWriteConfigDocRejectsUnknownGroup pins the error path: a group that
// configGroups lacks fails generation rather than dropping the setting.
func TestWriteConfigDocRejectsUnknownGroup(t *testing.T) {
	saved := configGroups
	t.Cleanup(func() { configGroups = saved })
	configGroups = slices.DeleteFunc(slices.Clone(saved), func(g configGroup) bool { return g.Key == "logging" })
	err := writeConfigDoc(&bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "OBSPROXY_ACCESS_LOG")
}

// TestConfigDocRows checks every table row against the struct tags, read
// here independently of settingRows: variable, flag, default, accepted
// values and meaning, in that order, and each setting exactly once.
func TestConfigDocRows(t *testing.T) {
	doc := renderConfigDoc(t)
	vars, flags := configVars(t)
	for i, key := range vars {
		t.Run(key, func(t *testing.T) {
			var rows []string
			for _, l := range strings.Split(doc, "\n") {
				if strings.HasPrefix(l, "| `"+key+"` |") {
					rows = append(rows, l)
				}
			}
			require.Len(t, rows, 1, "want exactly one row for %s", key)
			f := fieldForVar(t, key)
			def := "(empty)"
			if d := f.Tag.Get("envDefault"); d != "" {
				def = "`" + d + "`"
			}
			want := "| `" + key + "` | `" + flags[i] + "` | " + def + " | " +
				strings.ReplaceAll(f.Tag.Get("accept"), "|", `\|`) + " | " +
				strings.ReplaceAll(f.Tag.Get("help"), "|", `\|`) + " |"
			assert.Equal(t, want, rows[0])
		})
	}
	assert.Contains(t, doc, "DO NOT EDIT")
	assert.Contains(t, doc, "make docs")
}

func TestMarkdownAnchor(t *testing.T) {
	for in, want := range map[string]string{
		"Admin listener and /diag": "admin-listener-and-diag",
		"Listener and workers":     "listener-and-workers",
		"Metrics push":             "metrics-push",
	} {
		assert.Equal(t, want, markdownAnchor(in), in)
	}
}

// specVarRe finds the variables of the spec; specDefaultRe the ones written
// with a default, as `OBSPROXY_X` [`default`].
var (
	specVarRe     = regexp.MustCompile(`OBSPROXY_[A-Z0-9_]+`)
	specDefaultRe = regexp.MustCompile("`(OBSPROXY_[A-Z0-9_]+)` \\[`([^`]*)`\\]")
)

// TestConfigDocMatchesSpec checks the generated reference against the
// product contract (spec section 2): every OBSPROXY_ variable the spec
// names has a row, and the spec's defaults are the code's. The spec lives
// outside the repository (../shared/spec/obsproxy.md from its root); the
// test is skipped only when that file is absent.
func TestConfigDocMatchesSpec(t *testing.T) {
	spec, err := os.ReadFile(specPath)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s not found (the spec lives beside the repository, in shared/)", specPath)
	}
	require.NoError(t, err)
	doc := renderConfigDoc(t)

	names := specVarRe.FindAllString(string(spec), -1)
	slices.Sort(names)
	names = slices.Compact(names)
	require.NotEmpty(t, names, "no OBSPROXY_ variable found in %s", specPath)
	for _, name := range names {
		if name == "OBSPROXY_WORKER_NAME" {
			continue // set by obsproxy in each worker's environment (spec section 8), not a setting
		}
		assert.Contains(t, doc, "| `"+name+"` |", "the spec names %s, but the configuration reference has no row for it", name)
	}

	defaults := specDefaultRe.FindAllStringSubmatch(string(spec), -1)
	require.NotEmpty(t, defaults, "no `OBSPROXY_X` [`default`] found in %s", specPath)
	rows := make(map[string]settingRow)
	for _, r := range settingRows() {
		rows[r.Var] = r
	}
	for _, m := range defaults {
		r, ok := rows[m[1]]
		if assert.True(t, ok, "the spec gives a default for %s, which is no setting", m[1]) {
			assert.Equal(t, m[2], r.Default, "default of %s: spec (want) vs envDefault tag (got)", m[1])
		}
	}
}
