-- Rendering the time selection: what is rendered, and that the user's render settings come back
-- exactly, whatever happens.

local Mock = dofile(T.here .. "mock_reaper.lua")

local function assert_user_settings_back(mock)
  for key, value in pairs(Mock.USER_RENDER_SETTINGS) do
    T.eq(mock.render[key], value, key .. " is back to the user's value")
    T.eq(math.type(mock.render[key]), math.type(value), key .. " keeps its number type")
  end
  T.eq(mock.render, Mock.USER_RENDER_SETTINGS, "render settings")
end

T.test("render_master_renders_the_window_and_restores_settings", function()
  local lib = T.lib()
  local mock = Mock.install(Mock.new())
  local dir = T.tmpdir()
  local path = assert(lib.render_master(12.5, 20.5, dir, "stemserver-mix-1"))
  T.eq(path, dir .. "/stemserver-mix-1.wav")
  T.ok(Mock.file_exists(path), "the rendered file exists")
  T.eq(#mock.renders, 1, "one render")
  local during = mock.renders[1].settings
  T.eq(during.RENDER_SETTINGS, 0, "master mix")
  T.eq(during.RENDER_BOUNDSFLAG, 0, "custom time bounds")
  T.eq(during.RENDER_STARTPOS, 12.5)
  T.eq(during.RENDER_ENDPOS, 20.5)
  T.eq(during.RENDER_TAILFLAG, 0, "no tail")
  T.eq(during.RENDER_ADDTOPROJ, 0, "not added to the project")
  T.eq(during.RENDER_NORMALIZE, 0, "no normalisation")
  T.eq(during.RENDER_FORMAT, "evaw", "WAV")
  T.eq(during.RENDER_FORMAT2, "", "no secondary format")
  T.eq(mock.renders[1].target, path, "REAPER writes where the script looks")
  assert_user_settings_back(mock)
end)

T.test("render_settings_are_restored_when_the_render_writes_nothing", function()
  local lib = T.lib()
  local mock = Mock.install(Mock.new({ on_render = function() end }))  -- cancelled: no file
  local dir = T.tmpdir()
  local path, why = lib.render_master(0, 8, dir, "mix")
  T.eq(path, nil)
  T.contains(why, "did not render")
  assert_user_settings_back(mock)
end)

T.test("render_settings_are_restored_when_the_render_raises", function()
  local lib = T.lib()
  local mock = Mock.install(Mock.new({ on_render = function() error("disk full") end }))
  T.raises(function() lib.render_master(0, 8, T.tmpdir(), "mix") end, "disk full")
  assert_user_settings_back(mock)
end)

T.test("render_on_windows_uses_backslashes", function()
  local lib = T.lib()
  local dir = T.tmpdir()
  local mock = Mock.install(Mock.new({ os = "Win64" }))
  local path = assert(lib.render_master(0, 8, dir, "mix"))
  T.cleanup[#T.cleanup + 1] = path  -- on this POSIX machine, a file named "...\mix.wav" beside dir
  T.eq(path, dir .. "\\mix.wav")
  T.eq(mock.renders[1].target, path)
  assert_user_settings_back(mock)
end)
