-- Command lines: quoting, the script ExecProcess runs, and reading the client's answer.

local Mock = dofile(T.here .. "mock_reaper.lua")

-- Arguments a shell would mangle if the quoting were wrong.
local NASTY = {
  "plain", "with space", "it's", 'say "hi"', "$HOME", "${PATH}", "`id`", "$(id)", "back\\slash\\",
  "semi;colon && echo pwned | cat > /dev/null", "new\nline", "", "-n", "*", "~", "tab\there",
  "caf\u{e9} \u{1f3b8}", "'", "''", "\\'", "#not a comment", "a\tb  c",
}

-- Runs argv the way the scripts do: quoted into a command script, started by ExecProcess's line as
-- REAPER splits it. printf '%s\0' prints each argument it received followed by a NUL byte.
local function echo_through_sh(lib, args)
  local dir = T.tmpdir()
  local argv = { "printf", "%s\\0" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local text = assert(lib.command_script(argv, false))
  local script = T.write(dir .. "/echo.sh", text)
  local code, output = lib.split_exec_result(Mock.run_for_real(assert(lib.exec_line(script, false))))
  T.eq(code, 0, "exit code")
  local received = {}
  for arg in output:gmatch("(.-)%z") do received[#received + 1] = arg end
  return received
end

T.test("posix_quoting_passes_every_argument_intact_through_sh", function()
  local lib = T.lib()
  T.eq(echo_through_sh(lib, NASTY), NASTY)
  T.eq(lib.quote_posix("it's"), [['it'\''s']])
  T.eq(lib.quote_posix(""), "''")
end)

T.test("posix_command_of_the_client_survives_paths_with_spaces_and_quotes", function()
  local lib = T.lib()
  local settings = { executable = "/Users/o'brien/my \"tools\"/stemserver", server = "osc://127.0.0.1:9000",
                     k = 10, timeout = 20 }
  local argv = lib.client_argv(settings, "/tmp/mix of 'my' \"song\" $1.wav", "-nylon guitar")
  local received = echo_through_sh(lib, argv)
  T.eq(received, argv)
end)

T.test("client_argv_is_the_documented_command", function()
  local lib = T.lib()
  local settings = { executable = "stemserver", server = "ws://127.0.0.1:8765", k = 5, timeout = 2.5 }
  T.eq(lib.client_argv(settings, "/tmp/mix.wav", "nylon guitar"), {
    "stemserver", "query", "/tmp/mix.wav", "--instrument=nylon guitar", "-k", "5",
    "--server=ws://127.0.0.1:8765", "--timeout", "2.5", "--seconds", "8", "--json",
  })
end)

T.test("command_script_joins_stderr_to_stdout", function()
  local lib = T.lib()
  local posix = assert(lib.command_script({ "/opt/stem server/stemserver", "query" }, false))
  T.contains(posix, "'/opt/stem server/stemserver' 'query' 2>&1\n")
  local windows = assert(lib.command_script({ [[C:\Program Files\stemserver\stemserver.exe]], "query" }, true))
  T.contains(windows, '\r\n"C:\\Program Files\\stemserver\\stemserver.exe" "query" 2>&1\r\n')
  T.contains(windows, "@echo off\r\n", "the command is not echoed into the output")
  T.contains(windows, "exit /b %ERRORLEVEL%\r\n", "the client's exit code is the script's")
end)

T.test("exec_line_is_split_by_reaper_into_interpreter_and_script", function()
  local lib = T.lib()
  T.eq(Mock.reaper_split(assert(lib.exec_line("/var/folders/x_y/T/stemserver-query-1.sh", false))),
       { "/bin/sh", "/var/folders/x_y/T/stemserver-query-1.sh" })
  T.eq(lib.exec_line([[C:\Users\Jo Smith\AppData\Local\Temp\stemserver-query-1.cmd]], true),
       [[cmd.exe /C "C:\Users\Jo Smith\AppData\Local\Temp\stemserver-query-1.cmd"]])
  T.eq(select(2, lib.exec_line('/tmp/a"b.sh', false)), "the temporary folder's path contains a double quote")
end)

-- How a Windows program reads its command line (the documented CommandLineToArgvW rules): 2n
-- backslashes before a quote are n backslashes and the quote toggles quoting; 2n+1 are n and a
-- literal quote; other backslashes are literal.
local function windows_argv(line)
  local args, current, quoted, have, i = {}, {}, false, false, 1
  while i <= #line do
    local c = line:sub(i, i)
    if c == "\\" then
      local run = line:match("^\\+", i)
      if line:sub(i + #run, i + #run) == '"' then
        current[#current + 1] = string.rep("\\", #run // 2)
        if #run % 2 == 1 then current[#current + 1] = '"' else quoted = not quoted end
        i = i + #run + 1
      else
        current[#current + 1] = run
        i = i + #run
      end
      have = true
    elseif c == '"' then
      quoted, have, i = not quoted, true, i + 1
    elseif (c == " " or c == "\t") and not quoted then
      if have then args[#args + 1] = table.concat(current) end
      current, have, i = {}, false, i + 1
    else
      current[#current + 1], have, i = c, true, i + 1
    end
  end
  if have then args[#args + 1] = table.concat(current) end
  return args
end

T.test("windows_quoting_follows_cmd_and_argv_rules", function()
  local lib = T.lib()
  T.eq(lib.quote_windows([[C:\Program Files\stemserver.exe]]), [["C:\Program Files\stemserver.exe"]])
  T.eq(lib.quote_windows([[C:\dir with space\]]), [["C:\dir with space\\"]], "a trailing backslash is doubled")
  T.eq(lib.quote_windows("100% bass"), '"100%% bass"', "% is doubled in a batch file")
  T.eq(lib.quote_windows("a & b | c > d ^ (e)"), '"a & b | c > d ^ (e)"', "cmd metacharacters are inert in quotes")
  T.eq(lib.quote_windows(""), '""')
  T.eq(select(2, lib.quote_windows('say "hi"')), 'contains a double quote (")')
  T.eq(select(2, lib.quote_windows("two\nlines")), "contains a line break")
  local text, why = lib.command_script({ "stemserver", 'bad"arg' }, true)
  T.eq(text, nil)
  T.contains(why, "cannot pass")

  -- What the program receives, once cmd.exe has turned %% back into %.
  local args = { [[C:\Program Files\stemserver\stemserver.exe]], "query", [[C:\Users\Jo Smith\Temp\mix 1.wav]],
                 "--instrument=nylon guitar", [[C:\ends with\]], [[C:\ends\\]], "100%", "a & b", "", "tab\there" }
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = assert(lib.quote_windows(a)):gsub("%%%%", "%%") end
  T.eq(windows_argv(table.concat(quoted, " ")), args)
end)

T.test("interpret_reads_the_json_after_any_warnings", function()
  local lib = T.lib()
  local settings = lib.DEFAULTS
  local reply = '{\n  "id": "abc",\n  "matches": [{"rank": 1, "path": "/a.wav", "score": 0.5}]\n}\n'
  local result = assert(lib.interpret("0\n" .. reply, settings))
  T.eq(result.matches[1].path, "/a.wav")
  result = assert(lib.interpret("0\r\n/usr/lib/python3/x.py:1: UserWarning: {careful}\n  warn()\n" .. reply, settings))
  T.eq(result.id, "abc", "warnings before the JSON are skipped")
  local _, why = lib.interpret("0\nnot json at all\n", settings)
  T.contains(why, "cannot read")
  T.contains(why, "not json at all")
  _, why = lib.interpret('0\n{"no": "matches"}\n', settings)
  T.contains(why, '"matches"')
end)

T.test("interpret_explains_a_server_that_is_not_running", function()
  local lib = T.lib()
  local settings = lib.DEFAULTS
  local _, why = lib.interpret("1\nstemserver: error: server error timeout: no answer from osc://127.0.0.1:9000 "
                               .. "within 20 s (is `stemserver serve` running?)\n", settings)
  T.contains(why, "not answering")
  T.contains(why, "no answer from osc://127.0.0.1:9000")
  T.contains(why, "stemserver serve --checkpoint")
  T.contains(why, "osc://127.0.0.1:9000", "the configured address")
  _, why = lib.interpret("1\nstemserver: error: server error unreachable: cannot reach ws://127.0.0.1:8765 "
                         .. "([Errno 111] Connect call failed); is `stemserver serve` running?\n", settings)
  T.contains(why, "not answering")
end)

T.test("interpret_shows_the_servers_error", function()
  local lib = T.lib()
  local _, why = lib.interpret("1\nstemserver: error: server error bad_audio: /tmp/m.wav: the audio is silent; "
                               .. "send the mix while it plays\n", lib.DEFAULTS)
  T.contains(why, "stemserver reported an error")
  T.contains(why, "the audio is silent")
end)

T.test("interpret_explains_a_missing_executable", function()
  local lib = T.lib()
  for _, raw in ipairs({ "127\n/tmp/q.sh: 3: stemserver: not found\n",
                         "9009\n'stemserver' is not recognized as an internal or external command,\n",
                         "126\n/tmp/q.sh: 3: /opt/stemserver: Permission denied\n" }) do
    local _, why = lib.interpret(raw, lib.DEFAULTS)
    T.contains(why, "could not start the stemserver command")
    T.contains(why, "stemserver: Settings")
  end
  local _, why = lib.interpret(nil, lib.DEFAULTS)
  T.contains(why, "could not run")
  _, why = lib.interpret("2\nusage: stemserver query ... error: unrecognized arguments: --seconds\n", lib.DEFAULTS)
  T.contains(why, "did not accept its arguments")
  _, why = lib.interpret("2\nusage: stemserver [-h] ...\nstemserver: error: unrecognized arguments: --tempo 120\n",
                         lib.DEFAULTS)
  T.contains(why, "older than these scripts")
  T.contains(why, "--tempo 120")
  _, why = lib.interpret("-9\nKilled\n", lib.DEFAULTS)
  T.contains(why, "exit code -9")
end)

T.test("client_argv_sends_the_project_tempo_and_the_key_set_by_the_user", function()
  local lib = T.lib()
  local settings = { executable = "stemserver", server = "osc://127.0.0.1:9000", k = 10, timeout = 20, key = "" }
  T.eq(lib.client_argv(settings, "/tmp/mix.wav", "bass", 123.456789), {
    "stemserver", "query", "/tmp/mix.wav", "--instrument=bass", "-k", "10", "--server=osc://127.0.0.1:9000",
    "--timeout", "20", "--seconds", "8", "--tempo", "123.457", "--json",
  })
  T.eq(lib.client_argv(settings, "/tmp/mix.wav", "bass", 96)[12], "--tempo")
  T.eq(lib.client_argv(settings, "/tmp/mix.wav", "bass", 96)[13], "96")
  for _, tempo in ipairs({ 19.9, 400.5 }) do  -- outside what the server takes: it estimates the tempo itself
    T.eq(lib.client_argv(settings, "/tmp/mix.wav", "bass", tempo)[12], "--json", "no --tempo for " .. tempo)
  end
  settings.key = "F#m"
  local argv = lib.client_argv(settings, "/tmp/mix.wav", "bass", 140)
  T.eq({ table.unpack(argv, 12) }, { "--tempo", "140", "--key=F#m", "--json" })
end)

T.test("project_tempo_is_the_average_over_the_window", function()
  local lib = T.lib()
  Mock.install(Mock.new({ tempo_map = { { 0, 124 } } }))
  T.near(lib.project_tempo(24, 32), 124, 1e-9, "a constant tempo")
  Mock.install(Mock.new({ tempo_map = { { 0, 120 }, { 20, 90 } } }))
  T.near(lib.project_tempo(16, 24), (4 * 120 + 4 * 90) / 8, 1e-9, "a tempo change halfway through the window")
  T.near(lib.project_tempo(20, 28), 90, 1e-9, "after the change")
end)
