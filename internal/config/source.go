package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Sources are where settings come from besides their defaults. Nil
// functions mean the real process environment and host name.
type Sources struct {
	// Flags holds the flags given on the command line, by name; switches
	// are "true" or "false". Flags left at their default must be absent.
	Flags map[string]string
	// LookupEnv reads an environment variable (os.LookupEnv).
	LookupEnv func(key string) (string, bool)
	// Hostname names this machine for the node-name default (os.Hostname).
	Hostname func() (string, error)
	// DefaultFile is read when neither --config nor ORCH_CONFIG names a
	// file; empty means the package's DefaultFile.
	DefaultFile string
}

func (s Sources) lookupEnv(key string) (string, bool) {
	if s.LookupEnv == nil {
		return os.LookupEnv(key)
	}
	return s.LookupEnv(key)
}

func (s Sources) hostname() (string, error) {
	if s.Hostname == nil {
		return os.Hostname()
	}
	return s.Hostname()
}

type originKind int

const (
	fromNowhere originKind = iota // not set, no default
	fromDefault
	fromFlag
	fromEnv
	fromFile
)

// Origin says where a value came from.
type Origin struct {
	kind originKind
	name string // flag name, variable name or file path
	line int    // file line, 1-based
}

func (o Origin) String() string {
	switch o.kind {
	case fromDefault:
		return "default"
	case fromFlag:
		return "flag --" + o.name
	case fromEnv:
		return "env " + o.name
	case fromFile:
		return o.name + ":" + strconv.Itoa(o.line)
	}
	return "not set"
}

// value is one setting as text, before it is parsed.
type value struct {
	text   string
	origin Origin
}

// Error is a bad setting: the key, where its value came from, and what is
// wrong with it, rendered as `key: reason (from origin)`.
type Error struct {
	Key    string
	Origin Origin
	Reason string // includes the offending value unless it is secret
}

func (e *Error) Error() string {
	if e.Origin.kind == fromNowhere {
		return e.Key + ": " + e.Reason
	}
	return fmt.Sprintf("%s: %s (from %s)", e.Key, e.Reason, e.Origin)
}

// fileEntry is one `key: value` line of a config file.
type fileEntry struct {
	key  string
	val  string // a list's items are joined with commas
	line int
	list bool
}

// readFile loads the config file at path. A missing file is reported as
// fs.ErrNotExist so the caller can decide whether it matters.
func readFile(path string) ([]fileEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseFile(path, data)
}

// parseFile reads a flat YAML mapping of flag names to scalar values,
// remembering the line of each so errors can point at it.
func parseFile(path string, data []byte) ([]fileEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml.v3 errors already carry "line N".
		return nil, fmt.Errorf("%s: not valid YAML: %w", path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // empty or only comments
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a mapping of flag names to values (e.g. `https-listen-port: 6443`), got %s",
			path, root.Line, nodeKind(root))
	}
	seen := make(map[string]int)
	var out []fileEntry
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s:%d: keys must be flag names, got %s", path, k.Line, nodeKind(k))
		}
		if prev, dup := seen[k.Value]; dup {
			return nil, &Error{Key: k.Value, Origin: Origin{kind: fromFile, name: path, line: k.Line},
				Reason: fmt.Sprintf("set twice in the file, first on line %d", prev)}
		}
		seen[k.Value] = k.Line
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		origin := Origin{kind: fromFile, name: path, line: v.Line}
		if v.Kind == yaml.SequenceNode {
			items, err := listItems(v)
			if err != nil {
				return nil, &Error{Key: k.Value, Origin: origin, Reason: err.Error()}
			}
			out = append(out, fileEntry{key: k.Value, val: strings.Join(items, ","), line: v.Line, list: true})
			continue
		}
		switch {
		case v.Kind != yaml.ScalarNode:
			return nil, &Error{Key: k.Value, Origin: origin, Reason: "want a single value, got " + nodeKind(v)}
		case v.Tag == "!!null":
			return nil, &Error{Key: k.Value, Origin: origin, Reason: "has no value; remove the line to use the default"}
		}
		out = append(out, fileEntry{key: k.Value, val: v.Value, line: v.Line})
	}
	return out, nil
}

// listItems reads a list of plain values (`disable: [local-storage]`).
// Items are later carried as comma-separated text, as in the environment,
// so an item cannot contain a comma.
func listItems(seq *yaml.Node) ([]string, error) {
	items := make([]string, 0, len(seq.Content))
	for _, it := range seq.Content {
		if it.Kind == yaml.AliasNode && it.Alias != nil {
			it = it.Alias
		}
		switch {
		case it.Kind != yaml.ScalarNode || it.Tag == "!!null":
			return nil, fmt.Errorf("list items must be single values, got %s on line %d", nodeKind(it), it.Line)
		case strings.Contains(it.Value, ","):
			return nil, fmt.Errorf("list item %q on line %d contains a comma", it.Value, it.Line)
		}
		items = append(items, it.Value)
	}
	return items, nil
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// resolve gathers the text of every option of command, from flag, env, file
// or default, in that order of precedence.
func resolve(command string, src Sources) (map[string]value, error) {
	own, other, otherName := optionsFor(command)
	vals := make(map[string]value, len(own))

	// Where is the file? It cannot name itself, so only flag, env, default.
	def := src.DefaultFile
	if def == "" {
		def = DefaultFile
	}
	cfg := value{text: def, origin: Origin{kind: fromDefault}}
	if t, ok := src.Flags[keyConfig]; ok {
		cfg = value{text: t, origin: Origin{kind: fromFlag, name: keyConfig}}
	} else if t, ok := src.lookupEnv(envVar(keyConfig)); ok && t != "" {
		cfg = value{text: t, origin: Origin{kind: fromEnv, name: envVar(keyConfig)}}
	}
	vals[keyConfig] = cfg

	var file map[string]value
	if cfg.text == "" {
		return nil, &Error{Key: keyConfig, Origin: cfg.origin, Reason: "empty file name"}
	}
	entries, err := readFile(cfg.text)
	switch {
	case errors.Is(err, fs.ErrNotExist) && cfg.origin.kind == fromDefault:
		// No config file is the common case.
	case err != nil:
		var cerr *Error
		if errors.As(err, &cerr) {
			return nil, err
		}
		return nil, &Error{Key: keyConfig, Origin: cfg.origin, Reason: err.Error()}
	default:
		file, err = checkKeys(command, own, other, otherName, cfg.text, entries)
		if err != nil {
			return nil, err
		}
	}

	for _, o := range own {
		if o.Name == keyConfig {
			continue
		}
		env := o.EnvVar()
		if t, ok := src.Flags[o.Name]; ok {
			vals[o.Name] = value{text: t, origin: Origin{kind: fromFlag, name: o.Name}}
		} else if t, ok := src.lookupEnv(env); ok && t != "" {
			vals[o.Name] = value{text: t, origin: Origin{kind: fromEnv, name: env}}
		} else if v, ok := file[o.Name]; ok {
			vals[o.Name] = v
		} else if o.Default != "" {
			vals[o.Name] = value{text: o.Default, origin: Origin{kind: fromDefault}}
		} else {
			vals[o.Name] = value{}
		}
	}
	return vals, nil
}

// checkKeys rejects keys the command does not know, explaining each one.
func checkKeys(command string, own, other []Option, otherName, path string, entries []fileEntry) (map[string]value, error) {
	known := make(map[string]bool, len(own))
	lists := make(map[string]bool)
	var names []string
	for _, o := range own {
		known[o.Name] = true
		lists[o.Name] = o.List
		if o.Name != keyConfig {
			names = append(names, o.Name)
		}
	}
	otherKnown := make(map[string]bool, len(other))
	for _, o := range other {
		otherKnown[o.Name] = true
	}
	out := make(map[string]value, len(entries))
	var errs []error
	for _, e := range entries {
		origin := Origin{kind: fromFile, name: path, line: e.line}
		switch {
		case e.key == keyConfig:
			errs = append(errs, &Error{Key: e.key, Origin: origin,
				Reason: "cannot be set inside a config file; use --config or " + envVar(keyConfig)})
		case known[e.key] && e.list && !lists[e.key]:
			errs = append(errs, &Error{Key: e.key, Origin: origin, Reason: "want a single value, got a list"})
		case known[e.key]:
			out[e.key] = value{text: e.val, origin: origin}
		case otherKnown[e.key]:
			errs = append(errs, &Error{Key: e.key, Origin: origin,
				Reason: fmt.Sprintf("unknown key: it is a setting of `orch %s`, not `orch %s`", otherName, command)})
		default:
			reason := "unknown key"
			if s := closest(e.key, names); s != "" {
				reason += fmt.Sprintf("; did you mean %q?", s)
			}
			errs = append(errs, &Error{Key: e.key, Origin: origin, Reason: reason})
		}
	}
	return out, errors.Join(errs...)
}
