// helm-render renders a Helm chart directory to Kubernetes manifests on
// stdout, as `helm template` does, for the chart features kubetrail's chart
// uses. Helm is not packaged in Debian bookworm; this is the engine Helm
// itself is built on - Go's text/template with the sprig function library -
// plus the few functions and objects Helm adds (include, tpl, required,
// toYaml, fromYaml, toToml, lookup, .Values, .Release, .Chart, .Files,
// .Capabilities, .Template). What it lacks is listed in README.md ("Helm").
//
// usage: helm-render [--name RELEASE] [--namespace NS] [-f VALUES.yaml]...
//
//	[--set path.to.key=value]... CHART_DIR
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/BurntSushi/toml"
	"github.com/Masterminds/sprig/v3"
	"gopkg.in/yaml.v3"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// Files is .Files: the chart's files by path relative to the chart.
type Files struct{ dir string }

func (f Files) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		return ""
	}
	return string(b)
}

// APIVersions is .Capabilities.APIVersions: what the cluster serves. A
// render without a cluster knows only the built-in groups, as `helm
// template` does.
type APIVersions []string

func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

func readYAML(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

// merge puts src over dst, maps merged key by key (helm's values coalescing).
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// setValue applies one --set: a.b.c=value, the value typed as helm types
// it (true/false, integers, null, {a,b} lists, else a string).
func setValue(values map[string]interface{}, expr string) error {
	eq := strings.Index(expr, "=")
	if eq <= 0 {
		return fmt.Errorf("--set %q: expected path=value", expr)
	}
	path, raw := strings.Split(expr[:eq], "."), expr[eq+1:]
	var v interface{} = raw
	switch {
	case raw == "true" || raw == "false":
		v = raw == "true"
	case raw == "null":
		v = nil
	case strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}"):
		items := []interface{}{}
		for _, s := range strings.Split(raw[1:len(raw)-1], ",") {
			if s != "" {
				items = append(items, s)
			}
		}
		v = items
	default:
		if i, err := strconv.ParseInt(raw, 10, 64); err == nil {
			v = i
		}
	}
	node := values
	for _, p := range path[:len(path)-1] {
		next, ok := node[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			node[p] = next
		}
		node = next
	}
	node[path[len(path)-1]] = v
	return nil
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func main() {
	name := flag.String("name", "kubetrail", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	var valueFiles, sets multi
	flag.Var(&valueFiles, "f", "a values file (repeatable; later ones win)")
	flag.Var(&sets, "set", "path.to.key=value (repeatable; after the files)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [--name R] [--namespace NS] [-f values.yaml]... [--set k=v]... CHART_DIR")
		os.Exit(2)
	}
	if err := render(flag.Arg(0), *name, *namespace, valueFiles, sets); err != nil {
		fmt.Fprintln(os.Stderr, "helm-render:", err)
		os.Exit(1)
	}
}

func render(dir, release, namespace string, valueFiles, sets []string) error {
	meta, err := readYAML(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range valueFiles {
		more, err := readYAML(f)
		if err != nil {
			return err
		}
		values = merge(values, more)
	}
	for _, s := range sets {
		if err := setValue(values, s); err != nil {
			return err
		}
	}
	chart := map[string]interface{}{}
	for k, v := range meta { // Chart.yaml's keys as helm exposes them: .Chart.Name, .Chart.AppVersion
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}
	root := template.New("chart").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		out := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &out); err != nil {
			out["Error"] = err.Error()
		}
		return out
	}
	funcs["toToml"] = func(v interface{}) string {
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(v); err != nil {
			return err.Error()
		}
		return buf.String()
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["lookup"] = func(string, string, string, string) map[string]interface{} { return map[string]interface{}{} }
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	root.Funcs(funcs)
	var names []string
	chartName, _ := meta["name"].(string)
	err = filepath.WalkDir(filepath.Join(dir, "templates"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		tname := chartName + "/" + filepath.ToSlash(rel)
		if _, err := root.New(tname).Parse(string(text)); err != nil {
			return err
		}
		base := filepath.Base(path)
		if !strings.HasPrefix(base, "_") && base != "NOTES.txt" {
			names = append(names, tname)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	builtin := APIVersions{"v1", "apps/v1", "rbac.authorization.k8s.io/v1", "policy/v1", "coordination.k8s.io/v1"}
	for _, tname := range names {
		data := map[string]interface{}{
			"Values":  values,
			"Chart":   chart,
			"Files":   Files{dir},
			"Release": map[string]interface{}{"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
			"Capabilities": map[string]interface{}{
				"APIVersions": builtin,
				"KubeVersion": map[string]interface{}{"Version": "v1.32.0", "Major": "1", "Minor": "32"},
			},
			"Template": map[string]interface{}{"Name": tname, "BasePath": chartName + "/templates"},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, data); err != nil {
			return err
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(out) == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", tname, strings.TrimSpace(out))
	}
	return nil
}
