// Korean and English labels. Elements with data-i18n="key" get the text of the current
// language; code uses t("key"). The choice is kept in localStorage.

const WORDS = {
  title: ["기술자 콘솔", "Technician's console"],
  lang_button: ["English", "한국어"],
  stream_open: ["실시간 연결됨", "live"],
  stream_closed: ["연결 끊김: 다시 연결 중", "disconnected: reconnecting"],
  broker_link: ["브로커 연결", "Broker link"],
  online: ["온라인", "online"],
  offline: ["오프라인", "offline"],
  outbox: ["전송 대기", "Outbox"],
  last_seq: ["마지막 seq", "Last seq"],
  failures: ["연결 실패", "failed attempts"],
  cut_link: ["연결 끊기", "Cut link"],
  restore_link: ["연결 복구", "Restore"],
  seconds: ["초", "s"],
  link_cut_until: ["끊김, 복구 예정", "cut until"],
  link_ok: ["연결 정상", "link up"],
  link_unavailable: ["이 브로커는 연결 끊기를 지원하지 않음 (TLS)", "no link cut with this broker (TLS)"],
  alarm: ["경보", "Alarm"],
  alarm_idle: ["대기", "idle"],
  alarm_active: ["경보 발생", "ALARM"],
  alarm_acknowledged: ["관제센터 확인", "acknowledged"],
  test: ["시험", "test"],
  sent: ["전송됨", "sent"],
  not_sent: ["미전송", "not sent"],
  by: ["확인자", "by"],
  stuck: ["눌린 채 고정", "stuck"],
  test_mode_until: ["시험 모드 종료", "walk test until"],
  panic_buttons: ["비상벨", "Panic buttons"],
  press: ["누르기", "Press"],
  hold: ["계속 누르기", "Hold"],
  release: ["떼기", "Release"],
  cut_wire: ["선 끊기", "Cut wire"],
  repair_wire: ["선 잇기", "Repair wire"],
  chatter: ["떨림 만들기", "Chatter"],
  raw_input: ["입력", "input"],
  pressed: ["눌림", "pressed"],
  released: ["안 눌림", "released"],
  site_sees: ["현장 판단", "site sees"],
  active: ["작동", "active"],
  inactive: ["정상", "inactive"],
  wiring: ["배선 이상", "wiring"],
  fault: ["고장", "fault"],
  lamps: ["램프와 부저", "Lamps and buzzer"],
  sent_led: ["전송 램프", "sent lamp"],
  ack_led: ["확인 램프", "ack lamp"],
  buzzer: ["부저", "buzzer"],
  reset_key: ["리셋 키", "Reset key"],
  turn_key: ["키 돌리기", "Turn key"],
  hold_key: ["돌린 채 두기", "Keep turned"],
  key_turned: ["돌림", "turned"],
  key_off: ["원위치", "off"],
  lockers: ["보관함", "Lockers"],
  board: ["보드", "board"],
  mode: ["상태", "mode"],
  mode_ok: ["정상", "ok"],
  mode_silent: ["무응답", "silent"],
  mode_corrupt: ["잡음", "corrupt"],
  gpio_lockers: ["GPIO 보관함", "GPIO lockers"],
  locker: ["보관함", "Locker"],
  state: ["상태", "state"],
  st_free: ["비어 있음", "free"],
  st_reserved: ["예약", "reserved"],
  st_occupied: ["보관 중", "occupied"],
  st_open: ["열림", "open"],
  st_out_of_service: ["사용 중지", "out of service"],
  door: ["문", "door"],
  door_open: ["열림", "open"],
  door_closed: ["닫힘", "shut"],
  door_unknown: ["모름", "unknown"],
  parcel: ["물품", "parcel"],
  coil: ["코일", "coil"],
  jammed: ["걸림", "jammed"],
  forced: ["강제 열림", "forced"],
  overdue: ["기한 초과", "overdue"],
  oos: ["중지", "out of service"],
  force_open: ["강제로 열기", "Force open"],
  shut_door: ["문 닫기", "Shut door"],
  parcel_in: ["물품 넣기", "Parcel in"],
  parcel_out: ["물품 꺼내기", "Parcel out"],
  jam: ["잠금 걸리게", "Jam lock"],
  unjam: ["걸림 풀기", "Unjam"],
  pick_locker: ["보관함을 누르면 자세히 보입니다", "Click a locker for details"],
  code_reader: ["코드 리더기", "Code reader"],
  enter: ["입력", "Enter"],
  clear: ["지우기", "Clear"],
  modem: ["모뎀", "Modem"],
  registered: ["망 등록", "registered"],
  signal: ["신호", "signal"],
  callee: ["수신자", "callee"],
  sms_fail: ["문자 실패", "SMS fail"],
  silent_modem: ["모뎀 먹통", "modem silent"],
  callee_answer: ["받음", "answers"],
  callee_busy: ["통화 중", "busy"],
  callee_no_answer: ["안 받음", "no answer"],
  callee_no_carrier: ["받고 끊김", "drops"],
  callee_no_carrier_ringing: ["울리다 끊김", "drops ringing"],
  callee_no_dialtone: ["발신음 없음", "no dial tone"],
  sms: ["문자", "SMS"],
  calls: ["통화", "Calls"],
  none_yet: ["아직 없음", "none yet"],
  ok: ["성공", "ok"],
  failed: ["실패", "failed"],
  in_progress: ["진행 중", "in progress"],
  modem_site: ["현장 판단", "site sees"],
  centre: ["관제센터", "Control centre"],
  signing_key: ["서명 키", "Signing key"],
  dev_key: ["개발용 키", "development key"],
  key_file: ["키 파일", "key file"],
  key_id: ["키 ID", "key id"],
  no_dev_key: ["개발용 키 없음 (설정에 키가 있음)", "no development key (the config has keys)"],
  send: ["보내기", "Send"],
  sending: ["보내는 중…", "sending…"],
  waiting_result: ["결과 대기 중 (연결이 끊겼나요?)", "waiting for the result (link down?)"],
  result_ok: ["성공", "ok"],
  other_command: ["다른 명령", "Other command"],
  args_json: ["인자 (JSON)", "args (JSON)"],
  log: ["기록", "Log"],
  all_devices: ["모든 장치", "all devices"],
  all_types: ["모든 종류", "all types"],
  pause: ["멈춤", "Pause"],
  resume: ["계속", "Resume"],
  clear_log: ["지우기", "Clear"],
  missed: ["놓친 메시지", "missed messages"],
  on: ["켜짐", "on"],
  off: ["꺼짐", "off"],
  yes: ["예", "yes"],
  no: ["아니오", "no"],
  scenarios: ["시나리오", "Scenarios"],
  run: ["실행", "Run"],
};

const KEY = "ansim-console-lang";

export class I18n {
  constructor() {
    const saved = globalThis.localStorage?.getItem(KEY);
    this.lang = saved === "en" || saved === "ko" ? saved : "ko";
    this.listeners = [];
  }

  t(key) {
    const pair = WORDS[key];
    if (!pair) return key;
    return this.lang === "ko" ? pair[0] : pair[1];
  }

  has(key) {
    return key in WORDS;
  }

  toggle() {
    this.lang = this.lang === "ko" ? "en" : "ko";
    globalThis.localStorage?.setItem(KEY, this.lang);
    this.apply(document);
    for (const fn of this.listeners) fn(this.lang);
  }

  // Set the text (or placeholder/title) of every element marked with data-i18n.
  apply(root) {
    document.documentElement.lang = this.lang;
    for (const el of root.querySelectorAll("[data-i18n]")) {
      el.textContent = this.t(el.dataset.i18n);
    }
    for (const el of root.querySelectorAll("[data-i18n-title]")) {
      el.title = this.t(el.dataset.i18nTitle);
    }
  }
}
