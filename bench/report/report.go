package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"time"

	"github.com/gonets/gonets/bench/result"
)

// FileName is the name of the page that Write writes into its directory.
const FileName = "index.html"

//go:embed page.tmpl
var pageSource string

var pageTemplate = template.Must(template.New("page").Parse(pageSource))

// Write draws the runs as one self-contained HTML page, dir/index.html,
// creating dir if it does not exist and replacing an earlier page. It
// returns the page's path. Runs may be empty, or missing any of their
// parts: what is missing is said on the page rather than drawn.
func Write(dir string, runs []result.Result) (path string, err error) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, newPage(runs, time.Now())); err != nil {
		return "", fmt.Errorf("report: render: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	path = filepath.Join(dir, FileName)
	// Write beside the page and rename over it, so that a reader never
	// sees half a page.
	tmp, err := os.CreateTemp(dir, FileName+".*")
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return "", fmt.Errorf("report: write %q: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("report: write %q: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	return path, nil
}
