window.voiceengineStats = {};
