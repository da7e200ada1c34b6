-- The scripts against the real `stemserver` client and a real running server: only REAPER is
-- mocked. The "render" copies a mix the Python test wrote (8 s of one of the library's stems, cut
-- at a known offset), and ExecProcess really runs the line, split the way REAPER splits it.
-- tests/test_reaper_scripts.py starts the server and sets the STEMSERVER_TEST_* variables.

local Mock = dofile(T.here .. "mock_reaper.lua")

local function copy_file(from, to)
  T.write(to, T.read(from))
end

local function real_mock(options)
  local mix = options.mix or T.env("STEMSERVER_TEST_MIX")
  local mock = Mock.install(Mock.new({
    time_selection = options.time_selection,
    inputs = { "bass" },
    menu_choice = 1,
    on_render = function(_, target) copy_file(mix, target) end,
    exec = function(_, line) return Mock.run_for_real(line) end,
  }))
  -- What a user enters in "stemserver: Settings".
  mock.ext["stemserver/executable"] = T.env("STEMSERVER_TEST_EXECUTABLE")
  mock.ext["stemserver/server"] = options.server or T.env("STEMSERVER_TEST_SERVER")
  mock.ext["stemserver/timeout"] = "10"
  mock.script_path = T.root .. "stemserver_Find stem for time selection.lua"
  return mock
end

local function expected()
  return T.env("STEMSERVER_TEST_EXPECT_NAME"), tonumber(T.env("STEMSERVER_TEST_EXPECT_OFFSET"))
end

T.test("end_to_end_find_lines_the_stem_up_with_the_selection", function()
  local name, offset = expected()
  local mock = real_mock({ time_selection = { 20, 28 } })
  dofile(mock.script_path)
  T.eq(mock.messages, {}, "messages")
  T.eq(mock.tracks[1].name, "bass")
  local item = mock.tracks[1].items[1]
  local take = item.takes[1]
  T.eq(take.source.path:match("[^/]+$"), name, "the stem the mix was cut from ranks first")
  T.eq(item.info.D_POSITION, 20, "at the selection start")
  T.near(take.info.D_STARTOFFS, offset, 0.05, "the take starts where the mix was cut")
  T.near(item.info.D_LENGTH, 8, 1e-9)
  T.eq(mock.render, Mock.USER_RENDER_SETTINGS, "render settings restored")
  T.eq(mock.undo.begun, 1)

  -- "Next result" swaps in the second stem of the stored reply, without asking the server again.
  local state = T.lib().load_state()
  T.ok(#state.matches >= 2, "the server returned several stems")
  mock.script_path = T.root .. "stemserver_Next result.lua"
  dofile(mock.script_path)
  T.eq(mock.messages, {})
  T.eq(#mock.tracks[1].items, 1)
  T.eq(mock.tracks[1].items[1].takes[1].source.path, state.matches[2].path)
  T.eq(#mock.exec_lines, 1, "no second query")
end)

T.test("end_to_end_long_selection_places_the_window_at_its_end", function()
  local name, offset = expected()
  local mock = real_mock({ time_selection = { 16, 28 } })  -- the server hears 20..28
  dofile(mock.script_path)
  T.eq(mock.messages, {})
  T.eq(mock.renders[1].settings.RENDER_STARTPOS, 20)
  local take = mock.tracks[1].items[1].takes[1]
  T.eq(take.source.path:match("[^/]+$"), name)
  -- The take plays at the result's stretch (1 when the server gives none): 4 s of the timeline
  -- before the window are 4 * rate s of the stem.
  local rate = T.lib().playrate(T.lib().load_state().matches[1])
  T.eq(take.info.D_PLAYRATE, rate)
  T.near(take.info.D_STARTOFFS, offset - 4 * rate, 0.05, "4 s earlier at the selection start")
end)

T.test("end_to_end_server_not_running", function()
  local mock = real_mock({ time_selection = { 20, 28 }, server = T.env("STEMSERVER_TEST_DEAD_SERVER") })
  dofile(mock.script_path)
  T.eq(#mock.messages, 1)
  T.contains(mock.messages[1], "not answering")
  T.contains(mock.messages[1], "stemserver serve")
  T.eq(#mock.tracks, 0)
end)

T.test("end_to_end_server_error_is_shown", function()
  local mock = real_mock({ time_selection = { 20, 28 }, mix = T.env("STEMSERVER_TEST_SILENT_MIX") })
  dofile(mock.script_path)
  T.eq(#mock.messages, 1)
  T.contains(mock.messages[1], "stemserver reported an error")
  T.contains(mock.messages[1], "silent")
  T.eq(#mock.tracks, 0)
end)
