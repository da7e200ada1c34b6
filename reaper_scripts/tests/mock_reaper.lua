-- A stand-in for REAPER's ReaScript API: just the functions the stemserver scripts call, with the
-- project (render settings, tracks, items, ext states, undo blocks) kept in plain tables the tests
-- can inspect. Calling any other reaper.* function is an error, so a misspelt API name fails here
-- rather than in REAPER.

local Mock = {}

-- A user's render settings, deliberately unusual, that a run of the scripts must leave untouched.
Mock.USER_RENDER_SETTINGS = {
  RENDER_SETTINGS = 8 | 512 | (16 << 16),  -- render matrix, metadata, delayed start
  RENDER_BOUNDSFLAG = 3,                   -- all project regions
  RENDER_STARTPOS = 1.25,
  RENDER_ENDPOS = 97.5,
  RENDER_SRATE = 96000,
  RENDER_CHANNELS = 6,
  RENDER_TAILFLAG = 4,
  RENDER_TAILMS = 1500,                    -- never touched by the scripts, checked all the same
  RENDER_ADDTOPROJ = 1,
  RENDER_DITHER = 3,
  RENDER_NORMALIZE = 1 | 64,
  RENDER_FILE = "/Users/me/Renders with spaces",
  RENDER_PATTERN = "$project-$region",
  RENDER_FORMAT = "bDNwbUABAAABAAAABQAAAP////8EAAAAQAEAAAAAAAA=",  -- an MP3 configuration
  RENDER_FORMAT2 = "Y2FsZhAAAAAFAAAA",
}

local NUMBER_KEYS = {
  RENDER_SETTINGS = true, RENDER_BOUNDSFLAG = true, RENDER_STARTPOS = true, RENDER_ENDPOS = true,
  RENDER_SRATE = true, RENDER_CHANNELS = true, RENDER_TAILFLAG = true, RENDER_TAILMS = true,
  RENDER_ADDTOPROJ = true, RENDER_DITHER = true, RENDER_NORMALIZE = true,
}
local STRING_KEYS = { RENDER_FILE = true, RENDER_PATTERN = true, RENDER_FORMAT = true, RENDER_FORMAT2 = true }

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end
Mock.copy = copy

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
Mock.file_exists = file_exists

-- How REAPER's ExecProcess splits its line on macOS and Linux: at spaces, a token may be wrapped
-- in '...', "..." or `...` (no escapes), and no shell is involved.
function Mock.reaper_split(line)
  local args, i, n = {}, 1, #line
  while i <= n do
    local c = line:sub(i, i)
    if c == " " then
      i = i + 1
    elseif c == '"' or c == "'" or c == "`" then
      local j = line:find(c, i + 1, true) or n + 1
      args[#args + 1] = line:sub(i + 1, j - 1)
      i = j + 1
    else
      local j = line:find(" ", i, true) or n + 1
      args[#args + 1] = line:sub(i, j - 1)
      i = j
    end
  end
  return args
end

-- Runs an ExecProcess line for real the way REAPER would (split, then started without a shell: here
-- through /bin/sh with every token single-quoted) and answers in ExecProcess's format.
function Mock.run_for_real(line)
  local quoted = {}
  for i, arg in ipairs(Mock.reaper_split(line)) do quoted[i] = "'" .. arg:gsub("'", "'\\''") .. "'" end
  local pipe = assert(io.popen(table.concat(quoted, " "), "r"))
  local output = pipe:read("a")
  local _, _, code = pipe:close()
  return tostring(code) .. "\n" .. output
end

function Mock.new(options)
  options = options or {}
  local self = {
    os = options.os or "linux-x86_64",
    script_path = options.script_path or "",
    time_selection = options.time_selection or { 0, 0 },
    -- The project's tempo map: { {time_s, bpm}, ... } from time 0, each tempo held until the next.
    tempo_map = options.tempo_map or { { 0, 120 } },
    render = copy(options.render or Mock.USER_RENDER_SETTINGS),
    ext = {},        -- ["section/key"] = value
    proj_ext = {},
    tracks = {},     -- in project order
    messages = {},   -- every ShowMessageBox text
    inputs = options.inputs or {},  -- answers to GetUserInputs, in order: a string, or false for Cancel
    input_calls = {},
    menu_choice = options.menu_choice or 1,
    menus = {},
    undo = { begun = 0, ended = 0, names = {}, open = 0 },
    changes_outside_undo = {},
    renders = {},    -- for each render: the render settings at that moment and the target path
    exec_lines = {},
    exec_scripts = {},  -- the text of each command script, read when ExecProcess ran it
    on_render = options.on_render,
    exec = options.exec,
    next_guid = 0,
  }

  local function guid()
    self.next_guid = self.next_guid + 1
    return string.format("{00000000-0000-0000-0000-%012d}", self.next_guid)
  end

  local function changed(what)  -- project changes belong inside an undo block
    if self.undo.open == 0 then self.changes_outside_undo[#self.changes_outside_undo + 1] = what end
  end

  local sep = self.os:match("^Win") and "\\" or "/"
  local r = {}

  function r.GetOS() return self.os end
  function r.get_action_context() return false, self.script_path, 0, 0, -1, -1, 0 end
  function r.GetResourcePath() return "/tmp" end
  function r.time_precise() return os.clock() end
  function r.GetMousePosition() return 400, 300 end
  function r.file_exists(path) return file_exists(path) end

  function r.ShowMessageBox(text, title, kind)
    assert(type(text) == "string" and type(title) == "string" and kind == 0, "ShowMessageBox(text, title, 0)")
    self.messages[#self.messages + 1] = text
    return 1
  end

  function r.GetUserInputs(title, count, captions, defaults)
    assert(type(title) == "string" and math.type(count) == "integer", "GetUserInputs(title, count, ...)")
    self.input_calls[#self.input_calls + 1] = { title = title, count = count, captions = captions, defaults = defaults }
    local answer = table.remove(self.inputs, 1)
    if answer == nil then error("the test gave no answer for GetUserInputs: " .. title) end
    if answer == false then return false, "" end
    return true, answer
  end

  function r.GetExtState(section, key) return self.ext[section .. "/" .. key] or "" end
  function r.SetExtState(section, key, value, persist)
    assert(type(value) == "string" and type(persist) == "boolean", "SetExtState(section, key, string, persist)")
    self.ext[section .. "/" .. key] = value
  end
  function r.GetProjExtState(proj, section, key)
    local value = self.proj_ext[section .. "/" .. key]
    return value and 1 or 0, value or ""
  end
  function r.SetProjExtState(proj, section, key, value)
    assert(proj == 0 and type(value) == "string", "SetProjExtState(0, section, key, string)")
    self.proj_ext[section .. "/" .. key] = value
    return 1
  end

  function r.GetSet_LoopTimeRange(is_set, is_loop, start_s, end_s, seek)
    assert(is_set == false and is_loop == false, "the scripts only read the time selection")
    return self.time_selection[1], self.time_selection[2]
  end

  -- Quarter notes from the project start to tpos: the integral of the (stepwise) tempo map.
  function r.TimeMap2_timeToQN(proj, tpos)
    assert(proj == 0 and type(tpos) == "number", "TimeMap2_timeToQN(0, seconds)")
    local quarters, map = 0, self.tempo_map
    for i, marker in ipairs(map) do
      local from, till = marker[1], map[i + 1] and map[i + 1][1] or math.huge
      if tpos <= from then break end
      quarters = quarters + (math.min(tpos, till) - from) * marker[2] / 60
    end
    return quarters
  end

  function r.GetSetProjectInfo(proj, key, value, is_set)
    assert(proj == 0 and NUMBER_KEYS[key], "GetSetProjectInfo: unknown key " .. tostring(key))
    assert(type(value) == "number", "GetSetProjectInfo: value must be a number")
    if is_set then self.render[key] = value end
    return self.render[key]
  end
  function r.GetSetProjectInfo_String(proj, key, value, is_set)
    assert(proj == 0 and STRING_KEYS[key], "GetSetProjectInfo_String: unknown key " .. tostring(key))
    assert(type(value) == "string", "GetSetProjectInfo_String: value must be a string")
    if is_set then self.render[key] = value end
    return true, self.render[key]
  end

  function r.Main_OnCommand(command, flag)
    if command == 41824 or command == 42230 then
      local target = self.render.RENDER_FILE .. sep .. self.render.RENDER_PATTERN .. ".wav"
      self.renders[#self.renders + 1] = { settings = copy(self.render), target = target }
      if self.on_render then
        self.on_render(self, target)
      else
        local f = assert(io.open(target, "wb"))
        f:write("RIFF....WAVE")
        f:close()
      end
    else
      error("unexpected action " .. tostring(command))
    end
  end

  function r.ExecProcess(line, timeout_ms)
    assert(type(line) == "string" and math.type(timeout_ms) == "integer", "ExecProcess(string, integer ms)")
    self.exec_lines[#self.exec_lines + 1] = line
    local script = Mock.reaper_split(line)[2]
    local f = script and io.open(script, "rb")
    if f then
      self.exec_scripts[#self.exec_scripts + 1] = f:read("a")
      f:close()
    end
    if not self.exec then error("the test gave no ExecProcess handler") end
    return self.exec(self, line, timeout_ms)
  end

  -- Undo and UI refresh
  function r.Undo_BeginBlock()
    self.undo.begun = self.undo.begun + 1
    self.undo.open = self.undo.open + 1
  end
  function r.Undo_EndBlock(name, flags)
    assert(self.undo.open > 0, "Undo_EndBlock without Undo_BeginBlock")
    assert(type(name) == "string" and math.type(flags) == "integer", "Undo_EndBlock(name, flags)")
    self.undo.ended = self.undo.ended + 1
    self.undo.open = self.undo.open - 1
    self.undo.names[#self.undo.names + 1] = name
  end
  function r.PreventUIRefresh() end
  function r.UpdateArrange() end
  function r.UpdateItemInProject() end

  -- Tracks
  function r.CountTracks(proj) return #self.tracks end
  function r.GetTrack(proj, index) return self.tracks[index + 1] end
  function r.InsertTrackAtIndex(index, defaults)
    changed("InsertTrackAtIndex")
    table.insert(self.tracks, index + 1, { name = "", guid = guid(), items = {} })
  end
  function r.GetTrackGUID(track) return track.guid end
  function r.GetSetMediaTrackInfo_String(track, key, value, is_set)
    assert(key == "P_NAME", "track string " .. key)
    if is_set then
      changed("P_NAME")
      track.name = value
    end
    return true, track.name
  end

  -- Items and takes
  local function all_items()
    local items = {}
    for _, track in ipairs(self.tracks) do
      for _, item in ipairs(track.items) do items[#items + 1] = item end
    end
    return items
  end
  self.all_items = all_items

  function r.CountMediaItems(proj) return #all_items() end
  function r.GetMediaItem(proj, index) return all_items()[index + 1] end
  function r.GetMediaItem_Track(item) return item.track end
  function r.AddMediaItemToTrack(track)
    changed("AddMediaItemToTrack")
    local item = { track = track, guid = guid(), takes = {},
                   info = { D_POSITION = 0, D_LENGTH = 0, B_LOOPSRC = 1 } }  -- as if "loop new items" were on
    track.items[#track.items + 1] = item
    return item
  end
  function r.DeleteTrackMediaItem(track, item)
    changed("DeleteTrackMediaItem")
    for i, candidate in ipairs(track.items) do
      if candidate == item then
        table.remove(track.items, i)
        return true
      end
    end
    error("DeleteTrackMediaItem: the item is not on that track")
  end
  function r.GetSetMediaItemInfo_String(item, key, value, is_set)
    assert(key == "GUID" and not is_set, "item string " .. key)
    return true, item.guid
  end
  function r.SetMediaItemInfo_Value(item, key, value)
    assert(item.info[key] ~= nil, "item value " .. key)
    changed(key)
    item.info[key] = value
    return true
  end
  function r.AddTakeToMediaItem(item)
    changed("AddTakeToMediaItem")
    local take = { item = item, name = "", info = { D_STARTOFFS = 0, D_PLAYRATE = 1, B_PPITCH = 0, D_PITCH = 0 } }
    item.takes[#item.takes + 1] = take
    return take
  end
  function r.PCM_Source_CreateFromFile(path) return { path = path } end
  function r.SetMediaItemTake_Source(take, source)
    changed("SetMediaItemTake_Source")
    take.source = source
    return true
  end
  function r.SetMediaItemTakeInfo_Value(take, key, value)
    assert(take.info[key] ~= nil, "take value " .. key)
    changed(key)
    take.info[key] = value
    return true
  end
  function r.GetSetMediaItemTakeInfo_String(take, key, value, is_set)
    assert(key == "P_NAME", "take string " .. key)
    if is_set then
      changed("take P_NAME")
      take.name = value
    end
    return true, take.name
  end

  setmetatable(r, { __index = function(_, name) error("the mock REAPER has no function reaper." .. name, 2) end })
  self.reaper = r

  self.gfx = {
    x = 0, y = 0,
    init = function(title, w, h) self.gfx_open = true end,
    screentoclient = function(x, y) return 0, 0 end,
    showmenu = function(menu)
      assert(self.gfx_open, "gfx.showmenu needs gfx.init first")
      self.menus[#self.menus + 1] = menu
      return self.menu_choice
    end,
    quit = function() self.gfx_open = false end,
  }
  return self
end

-- Makes this mock the `reaper` and `gfx` the scripts see.
function Mock.install(mock)
  _G.reaper, _G.gfx = mock.reaper, mock.gfx
  return mock
end

return Mock
