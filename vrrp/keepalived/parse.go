// Package keepalived reads keepalived's configuration language, so that a
// deployment running keepalived can move to garpd without rewriting its
// configs by hand. It parses the syntax (blocks in either brace style,
// comments, quoted strings, include) into statements that remember their
// file and line, and extracts the VRRP instances and check scripts
// (parse.go, config.go). Convert writes a node's garpd config from them
// (convert.go); Render writes a keepalived.conf from garpd's virtual
// routers (render.go).
//
// Imports: vrrp (the settings it maps); cmd imports it.
package keepalived

import (
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Stmt is one statement: a keyword, its arguments, and the block that
// follows it, if any.
type Stmt struct {
	Key   string
	Args  []string
	Block []*Stmt
	File  string
	Line  int
}

// Where is the statement's file and line, as a note or a comment cites it.
func (s *Stmt) Where() string {
	return fmt.Sprintf("%s:%d", filepath.Join(filepath.Base(filepath.Dir(s.File)), filepath.Base(s.File)), s.Line)
}

// Files is how the parser reads files and expands include patterns; the
// operating system's by default, a map in tests.
type Files interface {
	ReadFile(name string) ([]byte, error)
	Glob(pattern string) ([]string, error)
}

// OSFiles reads the real file system: regular files of at most
// maxConfigSize. Includes stay inside the directory of the file given
// unless IncludeAnywhere: a config from elsewhere cannot make the import
// read (and quote in its notes) any file of the host.
type OSFiles struct{ IncludeAnywhere bool }

// maxConfigSize caps a file the parser reads: configs are kilobytes.
const maxConfigSize = 1 << 20

// ReadFile implements Files.
func (OSFiles) ReadFile(name string) ([]byte, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if st.Size() > maxConfigSize {
		return nil, fmt.Errorf("%s holds %d bytes: a keepalived config is at most %d", name, st.Size(), maxConfigSize)
	}
	return os.ReadFile(name)
}

// Glob implements Files.
func (OSFiles) Glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }

// MapFiles is a Files over a map of file names to contents: configs held
// in memory, and tests.
type MapFiles map[string]string

// ReadFile implements Files.
func (m MapFiles) ReadFile(name string) ([]byte, error) {
	s, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
	}
	return []byte(s), nil
}

// Glob implements Files, with path.Match's patterns.
func (m MapFiles) Glob(pattern string) ([]string, error) {
	var out []string
	for name := range m {
		if ok, err := path.Match(pattern, name); err != nil {
			return nil, err
		} else if ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// within reports whether path is dir or below it, symbolic links
// resolved.
func within(dir, path string) bool {
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// maxIncludeDepth stops include loops.
const maxIncludeDepth = 8

// placeholder is a template variable left in a file ({{VIP1}}, ${VIP}).
var placeholder = regexp.MustCompile(`\{\{[^}]*\}\}|\$\{[^}]*\}`)

// Parse reads a keepalived config file and the files it includes.
// configID is keepalived's config id (its -i option, by default the host
// name), which @ID conditional lines are matched against; "" refuses them.
func Parse(files Files, path, configID string) ([]*Stmt, error) {
	return parseFile(files, path, 0, filepath.Dir(path), &expander{id: configID, vars: map[string]string{}})
}

func parseFile(files Files, path string, depth int, root string, ex *expander) ([]*Stmt, error) {
	if depth > maxIncludeDepth {
		return nil, fmt.Errorf("%s: includes nest deeper than %d (an include loop?)", path, maxIncludeDepth)
	}
	raw, err := files.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keepalived config: %w", err)
	}
	text, err := ex.expand(path, string(raw))
	if err != nil {
		return nil, err
	}
	p := &parser{files: files, path: path, depth: depth, root: root, ex: ex}
	return p.parse(text)
}

type parser struct {
	files Files
	path  string
	depth int
	root  string // the directory of the file Parse was given
	ex    *expander
}

// expander applies keepalived's own substitutions (keepalived.conf(5)):
// "$NAME=value" lines define a variable, "$NAME" and "${NAME}" use it,
// and a line that starts "@ID" (or "@^ID") counts only on the node whose
// config id is (or is not) ID. Definitions carry into included files, as
// keepalived reads them in order.
type expander struct {
	id   string
	vars map[string]string
}

var (
	varDef = regexp.MustCompile(`^\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$`)
	varUse = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
	condID = regexp.MustCompile(`^\s*@(\^?)(\S+)\s+(.*)$`)
)

// expand returns text with the definitions and conditionals applied, and
// every placeholder left (a template's {{...}}, an undefined $VAR) listed
// at once as the error.
func (ex *expander) expand(path, text string) (string, error) {
	lines := strings.Split(text, "\n")
	var left []string
	for i, line := range lines {
		if m := condID.FindStringSubmatch(line); m != nil {
			if ex.id == "" {
				return "", fmt.Errorf("%s:%d: @%s%s: a line for some nodes only: name the node (garpd import --node, keepalived's config id)", path, i+1, m[1], m[2])
			}
			if (m[2] == ex.id) == (m[1] == "^") {
				lines[i] = ""
				continue
			}
			line = m[3]
		}
		if m := varDef.FindStringSubmatch(line); m != nil {
			ex.vars[m[1]] = strings.TrimSpace(m[2])
			lines[i] = ""
			continue
		}
		code := stripComment(line)
		code = varUse.ReplaceAllStringFunc(code, func(use string) string {
			m := varUse.FindStringSubmatch(use)
			name := m[1] + m[2]
			if v, ok := ex.vars[name]; ok {
				return v
			}
			left = append(left, fmt.Sprintf("%d: %s (undefined)", i+1, use))
			return use
		})
		for _, m := range placeholder.FindAllString(code, -1) {
			if !strings.HasPrefix(m, "${") { // undefined ${...} is listed above
				left = append(left, fmt.Sprintf("%d: %s", i+1, m))
			}
		}
		lines[i] = code
	}
	if len(left) > 0 {
		return "", fmt.Errorf("%s: %d template placeholders left in the file: render the template first, or define the variables ($NAME=value):\n  line %s", path, len(left), strings.Join(left, "\n  line "))
	}
	return strings.Join(lines, "\n"), nil
}

// token is a word, "{" or "}", with its line.
type token struct {
	text   string
	line   int
	quoted bool
}

// tokenize splits a file into lines of tokens. '#' and '!' start a
// comment outside quotes; braces are tokens of their own even when
// written against a word.
func (p *parser) tokenize(text string) ([][]token, error) {
	var lines [][]token
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		var toks []token
		var cur strings.Builder
		inQuote, quoted := false, false
		flush := func() {
			if cur.Len() > 0 || quoted {
				toks = append(toks, token{text: cur.String(), line: n, quoted: quoted})
			}
			cur.Reset()
			quoted = false
		}
	scan:
		for _, r := range line {
			switch {
			case inQuote:
				if r == '"' {
					inQuote = false
				} else {
					cur.WriteRune(r)
				}
			case r == '"':
				inQuote, quoted = true, true
			case r == '#' || r == '!':
				break scan
			case r == '{' || r == '}':
				flush()
				toks = append(toks, token{text: string(r), line: n})
			case r == ' ' || r == '\t' || r == '\r':
				flush()
			default:
				cur.WriteRune(r)
			}
		}
		if inQuote {
			return nil, fmt.Errorf("%s:%d: a quote is not closed", p.path, n)
		}
		flush()
		lines = append(lines, toks)
	}
	return lines, nil
}

func stripComment(line string) string {
	inQuote := false
	for i, r := range line {
		switch {
		case r == '"':
			inQuote = !inQuote
		case !inQuote && (r == '#' || r == '!'):
			return line[:i]
		}
	}
	return line
}

func (p *parser) parse(text string) ([]*Stmt, error) {
	lines, err := p.tokenize(text)
	if err != nil {
		return nil, err
	}
	root := &Stmt{}
	stack := []*Stmt{root}
	var last *Stmt // the statement a "{" on its own line opens
	for _, toks := range lines {
		var cur *Stmt
		for _, t := range toks {
			top := stack[len(stack)-1]
			switch {
			case t.text == "{" && !t.quoted:
				owner := cmp.Or(cur, last)
				if owner == nil {
					return nil, fmt.Errorf("%s:%d: a block opens without a statement before it", p.path, t.line)
				}
				stack = append(stack, owner)
				cur = nil
			case t.text == "}" && !t.quoted:
				if len(stack) == 1 {
					return nil, fmt.Errorf("%s:%d: a block closes that was not opened", p.path, t.line)
				}
				stack = stack[:len(stack)-1]
				cur, last = nil, nil
			case cur == nil:
				cur = &Stmt{Key: t.text, File: p.path, Line: t.line}
				top.Block = append(top.Block, cur)
				last = cur
			default:
				cur.Args = append(cur.Args, t.text)
			}
		}
	}
	if len(stack) > 1 {
		open := stack[len(stack)-1]
		return nil, fmt.Errorf("%s:%d: the block of %s is not closed", p.path, open.Line, open.Key)
	}
	return p.expandIncludes(root.Block)
}

// expandIncludes replaces each include statement by the statements of the
// files its pattern names, relative to the including file.
func (p *parser) expandIncludes(stmts []*Stmt) ([]*Stmt, error) {
	var out []*Stmt
	for _, s := range stmts {
		if s.Key != "include" {
			var err error
			if s.Block, err = p.expandIncludes(s.Block); err != nil {
				return nil, err
			}
			out = append(out, s)
			continue
		}
		if len(s.Args) != 1 {
			return nil, fmt.Errorf("%s: include takes one file or pattern", s.Where())
		}
		pattern := s.Args[0]
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(filepath.Dir(p.path), pattern)
		}
		names, err := p.files.Glob(pattern)
		if err != nil {
			return nil, fmt.Errorf("%s: include %s: %w", s.Where(), s.Args[0], err)
		}
		if len(names) == 0 && !strings.ContainsAny(pattern, "*?[") {
			return nil, fmt.Errorf("%s: include %s: %w", s.Where(), s.Args[0], fs.ErrNotExist)
		}
		for _, name := range names {
			if o, ok := p.files.(OSFiles); ok && !o.IncludeAnywhere && !within(p.root, name) {
				return nil, fmt.Errorf("%s: include %s: outside %s, the config's directory (--include-anywhere reads it)", s.Where(), name, p.root)
			}
			inc, err := parseFile(p.files, name, p.depth+1, p.root, p.ex)
			if err != nil {
				return nil, fmt.Errorf("%s: include: %w", s.Where(), err)
			}
			out = append(out, inc...)
		}
	}
	return out, nil
}
