-- The four scripts as REAPER runs them (dofile of the real script files), with a mock REAPER and
-- a canned answer of the stemserver client.

local Mock = dofile(T.here .. "mock_reaper.lua")

local SCRIPTS = {
  find = "stemserver_Find stem for time selection.lua",
  next = "stemserver_Next result.lua",
  previous = "stemserver_Previous result.lua",
  settings = "stemserver_Settings.lua",
}

local function run_script(mock, which)
  mock.script_path = T.root .. SCRIPTS[which]
  dofile(mock.script_path)
end

-- Three stems in a scratch folder (the scripts check that the file exists), as the client lists them.
local function stems(dir)
  local list = {
    { "fingered 01.wav", 0.81, 2.37, 16.0, false },
    { "sub loop.wav", 0.77, 0.64, 1.92, true },
    { 'picked & "07".wav', 0.74, 11.2, 32.5, false },
  }
  local matches = {}
  for i, s in ipairs(list) do
    matches[i] = { rank = i, path = T.write(dir .. "/" .. s[1], "RIFF"), score = s[2], offset_s = s[3],
                   offset_at_end_s = s[3] + 8, alignment_score = 0.4, duration_s = s[4], label = "bass",
                   loop = s[5] }
  end
  return matches
end

-- What ExecProcess returns for a successful `stemserver query --json`.
local function reply(lib, matches)
  return "0\n" .. lib.json.encode({ id = "abc", instrument = "bass", matches = matches,
                                    timings_ms = { total = 19.2 } }) .. "\n"
end

local function scenario(options)
  options = options or {}
  local lib = T.lib()
  local matches = stems(T.tmpdir())
  local mock = Mock.install(Mock.new({
    time_selection = options.time_selection or { 10, 16 },
    inputs = options.inputs or { "bass" },
    menu_choice = options.menu_choice or 1,
    exec = options.exec or function() return reply(lib, matches) end,
  }))
  return mock, matches, lib
end

local function only_item(mock)
  local items = mock.all_items()
  T.eq(#items, 1, "items in the project")
  T.eq(#items[1].takes, 1, "takes")
  return items[1], items[1].takes[1]
end

local function temp_files_removed(mock)
  for _, render in ipairs(mock.renders) do T.ok(not Mock.file_exists(render.target), "the rendered mix is removed") end
  for _, line in ipairs(mock.exec_lines) do
    T.ok(not Mock.file_exists(Mock.reaper_split(line)[2]), "the command script is removed")
  end
end

T.test("find_inserts_the_chosen_stem_in_one_undo_block", function()
  local mock, matches, lib = scenario({ menu_choice = 3 })
  run_script(mock, "find")
  T.eq(mock.messages, {}, "messages")

  T.eq(#mock.tracks, 1, "one new track")
  T.eq(mock.tracks[1].name, "bass", "named after the instrument")
  local item, take = only_item(mock)
  T.eq(take.source.path, matches[3].path, "the chosen stem")
  T.eq(item.info.D_POSITION, 10, "at the selection start")
  T.near(take.info.D_STARTOFFS, 11.2, 1e-9, "take offset = offset_s")
  T.near(item.info.D_LENGTH, 6, 1e-9, "as long as the selection")
  T.eq(item.info.B_LOOPSRC, 0, "a one-shot does not loop")
  T.eq(take.name, 'picked & "07".wav (3/3)')

  T.eq(mock.undo.begun, 1, "Undo_BeginBlock calls")
  T.eq(mock.undo.ended, 1, "Undo_EndBlock calls")
  T.eq(mock.undo.names, { "stemserver: insert bass stem" })
  T.eq(mock.changes_outside_undo, {}, "project changes outside the undo block")

  T.eq(#mock.renders, 1)
  T.eq(mock.renders[1].settings.RENDER_STARTPOS, 10, "render start")
  T.eq(mock.renders[1].settings.RENDER_ENDPOS, 16, "render end")
  T.eq(mock.render, Mock.USER_RENDER_SETTINGS, "render settings restored")

  T.eq(#mock.exec_lines, 1)
  T.eq(Mock.reaper_split(mock.exec_lines[1])[1], "/bin/sh")
  local script = mock.exec_scripts[1]
  T.contains(script, lib.quote_posix(mock.renders[1].target), "the rendered mix is the query")
  T.contains(script, "'--instrument=bass' '-k' '10' '--server=osc://127.0.0.1:9000'")
  T.contains(script, "'--json' 2>&1")
  temp_files_removed(mock)

  T.eq(mock.menus[1], "1. fingered 01.wav    score 0.81    offset 2.37 s"
                   .. "|2. sub loop.wav    score 0.77    offset 0.64 s    (loop)"
                   .. '|3. picked && "07".wav    score 0.74    offset 11.20 s')

  local state = lib.load_state()
  T.eq(state.index, 3)
  T.eq(state.matches, matches, "the results are kept for next/previous")
  T.eq(state.instrument, "bass")
  T.eq(state.item_guid, item.guid)
  T.eq(state.track_guid, mock.tracks[1].guid)
end)

T.test("find_inserts_a_loop_over_the_whole_selection", function()
  local mock = scenario({ menu_choice = 2, time_selection = { 20, 32 } })
  run_script(mock, "find")
  T.eq(mock.messages, {})
  T.eq(mock.renders[1].settings.RENDER_STARTPOS, 24, "only the last 8 s are rendered")
  local item, take = only_item(mock)
  T.eq(item.info.B_LOOPSRC, 1, "loops")
  T.eq(item.info.D_POSITION, 20)
  T.near(item.info.D_LENGTH, 12, 1e-9)
  T.near(take.info.D_STARTOFFS, (0.64 - 4) % 1.92, 1e-9, "wrapped offset")
end)

T.test("find_does_nothing_when_the_menu_is_dismissed", function()
  local mock, _, lib = scenario({ menu_choice = 0 })
  run_script(mock, "find")
  T.eq(#mock.tracks, 0)
  T.eq(mock.undo.begun, 0, "no undo point")
  T.eq(lib.load_state(), nil)
  T.eq(mock.render, Mock.USER_RENDER_SETTINGS)
  temp_files_removed(mock)
end)

T.test("find_needs_a_time_selection", function()
  local mock = scenario({ time_selection = { 5, 6.5 } })
  run_script(mock, "find")
  T.eq(#mock.messages, 1)
  T.contains(mock.messages[1], "at least 2 seconds")
  T.eq(#mock.input_calls, 0, "no question asked")
  T.eq(#mock.renders, 0, "nothing rendered")
end)

T.test("find_asks_for_the_instrument_with_the_default_filled_in", function()
  local mock = scenario({ inputs = { false } })
  mock.ext["stemserver/instrument"] = "nylon guitar"
  run_script(mock, "find")
  T.eq(mock.input_calls[1].defaults, "nylon guitar")
  T.eq(#mock.renders, 0, "cancelled: nothing rendered")
  T.eq(#mock.messages, 0)
end)

T.test("find_reports_a_server_that_is_not_running", function()
  local mock = scenario({ exec = function()
    return "1\nstemserver: error: server error timeout: no answer from osc://127.0.0.1:9000 within 20 s "
      .. "(is `stemserver serve` running?)\n"
  end })
  run_script(mock, "find")
  T.eq(#mock.messages, 1)
  T.contains(mock.messages[1], "not answering")
  T.contains(mock.messages[1], "stemserver serve")
  T.eq(#mock.tracks, 0)
  T.eq(mock.undo.begun, 0)
  T.eq(mock.render, Mock.USER_RENDER_SETTINGS, "render settings restored")
  temp_files_removed(mock)
end)

T.test("find_reports_a_stem_missing_on_this_computer", function()
  local mock, matches = scenario()
  os.remove(matches[1].path)
  run_script(mock, "find")
  T.contains(mock.messages[1], "not on this computer")
  T.eq(mock.undo.begun, 0)
end)

T.test("next_and_previous_walk_the_stored_results", function()
  local mock, matches, lib = scenario({ menu_choice = 1, time_selection = { 20, 32 } })
  run_script(mock, "find")
  local function shown()
    local item, take = only_item(mock)
    return take.source.path, item, take
  end
  T.eq(shown(), matches[1].path)

  run_script(mock, "next")
  local path, item, take = shown()
  T.eq(path, matches[2].path, "next")
  T.ok(item.track == mock.tracks[1], "on the same track")
  T.eq(item.info.B_LOOPSRC, 1, "placed for its own offset")
  T.near(take.info.D_STARTOFFS, (0.64 - 4) % 1.92, 1e-9)
  T.eq(take.name, "sub loop.wav (2/3)")
  T.eq(lib.load_state().index, 2)

  run_script(mock, "next")
  path, item, take = shown()
  T.eq(path, matches[3].path)
  T.near(take.info.D_STARTOFFS, 11.2 - 4, 1e-9)
  T.eq(item.info.B_LOOPSRC, 0)
  run_script(mock, "next")
  T.eq(shown(), matches[1].path, "wraps around after the last")
  run_script(mock, "previous")
  T.eq(shown(), matches[3].path, "and back before the first")
  run_script(mock, "previous")
  T.eq(shown(), matches[2].path)

  T.eq(#mock.tracks, 1, "no extra tracks")
  T.eq(mock.undo.begun, 6, "one undo block per run")
  T.eq(mock.undo.ended, 6)
  T.eq(mock.undo.names[2], "stemserver: next bass stem")
  T.eq(mock.undo.names[5], "stemserver: previous bass stem")
  T.eq(mock.changes_outside_undo, {})
  T.eq(#mock.exec_lines, 1, "next/previous do not ask the server again")
  T.eq(mock.messages, {})
end)

T.test("next_follows_the_item_when_the_user_moved_it", function()
  local mock = scenario()
  run_script(mock, "find")
  mock.reaper.InsertTrackAtIndex(1, true)
  local moved = table.remove(mock.tracks[1].items)
  moved.track = mock.tracks[2]
  mock.tracks[2].items[1] = moved
  run_script(mock, "next")
  T.eq(#mock.tracks[1].items, 0)
  T.eq(#mock.tracks[2].items, 1, "the replacement is where the user put the stem")
end)

T.test("next_after_the_item_or_its_track_was_deleted", function()
  local mock = scenario()
  run_script(mock, "find")
  mock.tracks[1].items = {}
  run_script(mock, "next")
  T.eq(#mock.tracks, 1, "the stored track is reused")
  T.eq(#mock.tracks[1].items, 1)
  mock.tracks = {}
  run_script(mock, "next")
  T.eq(#mock.tracks, 1, "a new track")
  T.eq(mock.tracks[1].name, "bass")
end)

T.test("next_without_a_query_says_what_to_do", function()
  local mock = Mock.install(Mock.new())
  run_script(mock, "next")
  T.contains(mock.messages[1], "Find stem for time selection")
  T.eq(mock.undo.begun, 0)
end)

T.test("settings_default_values", function()
  local lib = T.lib()
  Mock.install(Mock.new())
  T.eq(lib.load_settings(), { server = "osc://127.0.0.1:9000", k = 10, instrument = "bass",
                              executable = "stemserver", timeout = 20, key = "", transpose = true })
end)

T.test("settings_dialog_checks_and_stores_the_values", function()
  local lib = T.lib()
  local mock = Mock.install(Mock.new({ inputs = {
    "ftp://127.0.0.1:9000\n10\nbass\nstemserver\n20\n\nyes",
    "ws://127.0.0.1:8765\nzero\nbass\nstemserver\n20\n\nyes",
    "ws://127.0.0.1:8765\n5\nbass\nstemserver\n20\nH minor\nyes",
    "ws://127.0.0.1:8765\n5\nbass\nstemserver\n20\nF#m\nmaybe",
    " ws://127.0.0.1:8765 \n5\nnylon guitar\n/opt/stem server/bin/stemserver\n7.5\n F# minor \nNo",
  } }))
  run_script(mock, "settings")
  T.eq(#mock.input_calls, 5, "asked again until the values are valid")
  T.eq(mock.input_calls[1].count, 7, "seven fields")
  T.contains(mock.input_calls[1].captions, "Key of the mix")
  T.contains(mock.input_calls[1].captions, "separator=\n")
  T.eq(mock.input_calls[1].defaults, "osc://127.0.0.1:9000\n10\nbass\nstemserver\n20\n\nyes", "current values")
  T.eq(mock.input_calls[3].defaults, "ws://127.0.0.1:8765\nzero\nbass\nstemserver\n20\n\nyes",
       "the user's last try")
  T.contains(mock.messages[1], "server address")
  T.contains(mock.messages[2], "whole number")
  T.contains(mock.messages[3], "A minor, F# major")
  T.contains(mock.messages[4], "yes or no")
  T.eq(mock.ext["stemserver/server"], "ws://127.0.0.1:8765")
  T.eq(mock.ext["stemserver/k"], "5")
  T.eq(mock.ext["stemserver/instrument"], "nylon guitar")
  T.eq(mock.ext["stemserver/executable"], "/opt/stem server/bin/stemserver")
  T.eq(mock.ext["stemserver/timeout"], "7.5")
  T.eq(mock.ext["stemserver/key"], "F# minor")
  T.eq(mock.ext["stemserver/transpose"], "no")
  T.eq(lib.load_settings(), { server = "ws://127.0.0.1:8765", k = 5, instrument = "nylon guitar",
                              executable = "/opt/stem server/bin/stemserver", timeout = 7.5, key = "F# minor",
                              transpose = false })
end)

T.test("settings_cancel_changes_nothing", function()
  local mock = Mock.install(Mock.new({ inputs = { false } }))
  run_script(mock, "settings")
  T.eq(mock.ext, {})
end)

T.test("settings_that_are_unreadable_fall_back_to_the_defaults", function()
  local lib = T.lib()
  local mock = Mock.install(Mock.new())
  mock.ext["stemserver/k"] = "lots"
  T.eq(lib.load_settings().k, 10)
end)

T.test("settings_reach_the_command_line", function()
  local mock = scenario()
  mock.ext["stemserver/server"] = "ws://10.0.0.5:8765"
  mock.ext["stemserver/k"] = "3"
  mock.ext["stemserver/executable"] = "/Users/o'brien/stem server/stemserver"
  mock.ext["stemserver/timeout"] = "7.5"
  run_script(mock, "find")
  T.contains(mock.exec_scripts[1], "'/Users/o'\\''brien/stem server/stemserver' 'query' ")
  T.contains(mock.exec_scripts[1], "'-k' '3' '--server=ws://10.0.0.5:8765' '--timeout' '7.5'")
end)

T.test("a_script_error_becomes_a_message", function()
  local mock = scenario({ exec = function() error("boom") end })
  run_script(mock, "find")
  T.contains(mock.messages[1], "failed unexpectedly")
  T.contains(mock.messages[1], "boom")
  T.eq(mock.render, Mock.USER_RENDER_SETTINGS)
end)

-- A reply of a server that knows tempo and key (docs/protocol.md), as `stemserver query --json`
-- prints it: a stem at 120 BPM for a 96 BPM project (stretch 0.8), a loop at 76.8 BPM (1.25) a
-- fourth away in key, and a one-shot with neither.
local TEMPO_KEY_REPLY = [[
{
  "id": "q7", "instrument": "bass", "query_seconds": 8.0,
  "mix_tempo_bpm": 96.0, "mix_tempo_source": "client", "mix_key": "C major", "mix_key_source": "estimated",
  "matches": [
    {"rank": 1, "path": "DIR/funk 120bpm Am.wav", "score": 0.83, "offset_s": 9.0, "offset_at_end_s": 17.0,
     "alignment_score": 0.41, "duration_s": 30.0, "window_start_s": 8.5, "loop": false, "label": "bass",
     "sample_rate": 44100, "channels": 2, "tempo_bpm": 120.0, "key": "A minor", "bars": 15, "stretch": 0.8,
     "transpose": 0, "key_relation": "relative", "offset_beats": 14.4, "offset_bars": 3.6},
    {"rank": 2, "path": "DIR/sub loop.wav", "score": 0.77, "offset_s": 0.64, "offset_at_end_s": 0.64,
     "alignment_score": 0.35, "duration_s": 1.92, "window_start_s": 0.0, "loop": true, "label": "bass",
     "sample_rate": 44100, "channels": 1, "tempo_bpm": 76.8, "key": "D minor", "bars": 1, "stretch": 1.25,
     "transpose": -5, "key_relation": "subdominant", "offset_beats": 0.8192, "offset_bars": 0.2048},
    {"rank": 3, "path": "DIR/hit.wav", "score": 0.7, "offset_s": 11.2, "offset_at_end_s": 19.2,
     "alignment_score": 0.3, "duration_s": 32.5, "window_start_s": 11.0, "loop": false, "label": "bass",
     "sample_rate": 44100, "channels": 2, "tempo_bpm": null, "key": null, "bars": null, "stretch": null,
     "transpose": null, "key_relation": null, "offset_beats": null, "offset_bars": null}
  ],
  "timings_ms": {"total": 21.5}
}
]]

local function tempo_key_scenario(options)
  local dir = T.tmpdir()
  for _, name in ipairs({ "funk 120bpm Am.wav", "sub loop.wav", "hit.wav" }) do T.write(dir .. "/" .. name, "RIFF") end
  local mock = Mock.install(Mock.new({
    time_selection = { 20, 32 },  -- the window, 24..32, is 4 s in
    tempo_map = options.tempo_map or { { 0, 96 } },
    inputs = { "bass" },
    menu_choice = options.menu_choice or 1,
    exec = function() return "0\n" .. TEMPO_KEY_REPLY:gsub("DIR", dir) end,
  }))
  for key, value in pairs(options.settings or {}) do mock.ext["stemserver/" .. key] = value end
  return mock, dir
end

T.test("find_sends_the_project_tempo_and_no_key_unless_one_is_set", function()
  local mock = tempo_key_scenario({ tempo_map = { { 0, 120 }, { 28, 96 } } })
  run_script(mock, "find")
  T.eq(mock.messages, {})
  T.contains(mock.exec_scripts[1], "'--seconds' '8' '--tempo' '108' '--json' 2>&1", "the tempo over 24..32 s")
  T.ok(not mock.exec_scripts[1]:find("--key", 1, true), "the server estimates the key")

  mock = tempo_key_scenario({ settings = { key = "Am" } })
  run_script(mock, "find")
  T.contains(mock.exec_scripts[1], "'--tempo' '96' '--key=Am' '--json'")
end)

T.test("find_inserts_the_stem_stretched_to_the_project_tempo", function()
  local mock = tempo_key_scenario({})
  run_script(mock, "find")
  T.eq(mock.messages, {})
  T.contains(mock.menus[1], "1. funk 120bpm Am.wav    score 0.83    offset 9.00 s    120 BPM x0.80    "
                            .. "A minor (relative, +0 st)|")
  T.contains(mock.menus[1], "|2. sub loop.wav    score 0.77    offset 0.64 s    (loop)    76.8 BPM x1.25    "
                            .. "D minor (subdominant, -5 st)|")
  T.contains(mock.menus[1], "|3. hit.wav    score 0.70    offset 11.20 s", "nothing known about the one-shot")
  T.ok(mock.menus[1]:sub(-7) == "11.20 s", "and nothing after its offset")

  local item, take = only_item(mock)
  T.eq(take.info.D_PLAYRATE, 0.8, "playrate = stretch")
  T.eq(take.info.B_PPITCH, 1, "pitch preserved")
  T.eq(take.info.D_PITCH, 0, "already in the relative key")
  T.eq(item.info.D_POSITION, 20)
  T.near(take.info.D_STARTOFFS, 9.0 - 4 * 0.8, 1e-9, "offset_s reaches the window start 4 s later, at 0.8x")
  T.near(item.info.D_LENGTH, 12, 1e-9, "the selection")
  T.eq(item.info.B_LOOPSRC, 0)
  T.eq(take.name, "funk 120bpm Am.wav (1/3)  120 BPM x0.80  A minor (relative, +0 st)")
  T.eq(mock.changes_outside_undo, {})

  run_script(mock, "next")
  item, take = only_item(mock)
  T.eq(take.info.D_PLAYRATE, 1.25, "the loop's own stretch")
  T.eq(take.info.B_PPITCH, 1)
  T.eq(take.info.D_PITCH, -5, "transposed into the mix's key")
  T.eq(item.info.B_LOOPSRC, 1)
  T.near(take.info.D_STARTOFFS, (0.64 - 4 * 1.25) % 1.92, 1e-9, "wrapped, in the loop's seconds")
  T.near(item.info.D_LENGTH, 12, 1e-9)
  T.eq(take.name, "sub loop.wav (2/3)  76.8 BPM x1.25  D minor (subdominant, -5 st)")

  run_script(mock, "next")
  item, take = only_item(mock)
  T.eq(take.info.D_PLAYRATE, 1, "no tempo known: the stem's own speed")
  T.eq(take.info.D_PITCH, 0, "no key known: not transposed")
  T.near(take.info.D_STARTOFFS, 11.2 - 4, 1e-9, "placed as before")
  T.near(item.info.D_LENGTH, 12, 1e-9)
  T.eq(take.name, "hit.wav (3/3)")
  T.eq(mock.messages, {})
end)

T.test("transpose_off_leaves_the_pitch_alone", function()
  local mock = tempo_key_scenario({ menu_choice = 2, settings = { transpose = "no" } })
  run_script(mock, "find")
  local _, take = only_item(mock)
  T.eq(take.info.D_PLAYRATE, 1.25, "still stretched")
  T.eq(take.info.D_PITCH, 0, "not transposed")
  T.eq(take.name, "sub loop.wav (2/3)  76.8 BPM x1.25  D minor (subdominant)")
  mock.ext["stemserver/transpose"] = "yes"  -- Next and Previous follow the setting as it is now
  run_script(mock, "previous")
  run_script(mock, "next")
  _, take = only_item(mock)
  T.eq(take.info.D_PITCH, -5)
end)
