// argocd-health runs an Argo CD resource health check (Lua) the way Argo CD does, with the same Lua VM
// (gopher-lua, the version Argo CD v3 pins): the object is the global `obj`, the script returns a table whose
// `status` and `message` become the resource's health. For scripts from argocd-cm Argo CD skips the standard
// libraries and opens only package, base, table and a "safe" os (util/lua/lua.go, `runLua`); this opens the
// first three (cotlab's script needs no os), so a script that calls string.* or math.* fails here as it would in
// Argo CD.
//
// Usage: argocd-health SCRIPT.lua < object.json  ->  {"status": "...", "message": "..."} on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
)

func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		table := l.NewTable()
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]interface{}:
		table := l.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(l, item))
		}
		return table
	}
	panic(fmt.Sprintf("unexpected JSON value %T", value))
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health SCRIPT.lua < object.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var obj map[string]interface{}
	if err := json.NewDecoder(os.Stdin).Decode(&obj); err != nil {
		fmt.Fprintln(os.Stderr, "object:", err)
		os.Exit(1)
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(string(script)); err != nil {
		fmt.Fprintln(os.Stderr, "script:", err)
		os.Exit(1)
	}
	result, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		fmt.Fprintln(os.Stderr, "script: returned", l.Get(-1).Type().String(), "not a table")
		os.Exit(1)
	}
	health := map[string]string{}
	result.ForEach(func(key, value lua.LValue) {
		if s, isString := value.(lua.LString); isString {
			health[key.String()] = string(s)
		} else {
			health[key.String()] = value.String()
		}
	})
	out, _ := json.Marshal(health)
	fmt.Println(string(out))
}
